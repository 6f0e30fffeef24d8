use std::time::Instant;
use strata_ctf::read::{OpenOptions, TraceSet};
fn cpu() -> f64 {
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    r.ru_utime.tv_sec as f64 * 1e3
        + r.ru_utime.tv_usec as f64 * 1e-3
        + r.ru_stime.tv_sec as f64 * 1e3
        + r.ru_stime.tv_usec as f64 * 1e-3
}
fn flt() -> i64 {
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    r.ru_minflt
}
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let mut out = String::new();
    for i in 0..4 {
        let (c, f, t) = (cpu(), flt(), Instant::now());
        let b = std::fs::read(std::path::Path::new(&p).join("metadata")).unwrap();
        let (c1, f1, t1) = (cpu(), flt(), t.elapsed());
        drop(b);
        let (c, f) = (c + cpu() - c1, f + flt() - f1);
        let t = Instant::now() - t1;
        let set = TraceSet::open(p.as_ref(), &OpenOptions::default()).unwrap();
        let (c2, f2, t2) = (cpu(), flt(), t.elapsed());
        out += &format!(
            "round {i}: read md {:.3}ms {} flt | open cpu {:.3}ms wall {:.3}ms flt {}\n",
            (c1 - (c)),
            f1 - f,
            c2 - c,
            t2.as_secs_f64() * 1e3,
            f2 - f
        );
        std::mem::forget(set);
    }
    print!("{out}");
}
