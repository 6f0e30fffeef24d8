//! `CpuReaders::pump` on the running kernel, while a child keeps writing
//! events: per CPU and per pump at most one sub-buffer less than half full
//! (the page the kernel is still writing) reaches the sink, and nothing is
//! lost on the way. Prints one line and returns without root or tracefs.

use std::collections::HashMap;
use std::time::Duration;
use strata_ftrace::{CpuReaders, Instance, Page, Tracefs};

#[test]
fn pump_stops_at_the_page_the_kernel_is_writing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("caught-up pump: skipped, needs root for tracefs");
        return;
    }
    let tracefs = match Tracefs::find_or_mount() {
        Ok(t) if t.root().join("instances").is_dir() => t,
        _ => {
            println!("caught-up pump: skipped, no tracefs with instances/");
            return;
        }
    };
    const CALLS: u32 = 400_000;
    let inst = Instance::create(&tracefs, "test-caught-up").unwrap();
    inst.set_buffer_size_kb(1024).unwrap();
    // Wake on any data: the reader then keeps meeting the writer's page.
    inst.set_buffer_percent(0).unwrap();
    inst.enable_event("raw_syscalls", "sys_enter").unwrap();
    let enter = inst.event_format("raw_syscalls", "sys_enter").unwrap();
    let pid_of = enter.field("common_pid").unwrap().accessor();
    let nr_of = enter.field("id").unwrap().accessor();
    let cpus = inst.online_cpus().unwrap();
    let mut readers = CpuReaders::open(&inst, &cpus).unwrap();
    let layout = *readers.layout();
    inst.set_tracing_on(true).unwrap();
    // SAFETY: the child makes raw system calls and leaves with _exit.
    let child = unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            for _ in 0..CALLS {
                libc::syscall(libc::SYS_getppid);
            }
            libc::_exit(0);
        }
        pid
    };
    // The child's getppid calls on a page.
    let ours = |page: &Page<'_>| -> u64 {
        page.records()
            .map(|r| r.unwrap().data)
            .filter(|d| pid_of.i64(d) == Some(child as i64))
            .filter(|d| nr_of.i64(d) == Some(libc::SYS_getppid))
            .count() as u64
    };
    let mut seen = 0u64;
    let mut worst = 0;
    let mut pumps = 0;
    loop {
        let mut small: HashMap<u32, u32> = HashMap::new();
        let mut sink = |cpu: u32, bytes: &[u8]| -> Result<(), std::io::Error> {
            let page = Page::parse(&layout, bytes).unwrap();
            if page.data_len() < layout.data_size / 2 {
                *small.entry(cpu).or_default() += 1;
            }
            seen += ours(&page);
            Ok(())
        };
        readers.pump(Duration::from_millis(20), &mut sink).unwrap();
        pumps += 1;
        worst = worst.max(small.values().copied().max().unwrap_or(0));
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
            break;
        }
    }
    inst.set_tracing_on(false).unwrap();
    let mut sink = |_cpu: u32, bytes: &[u8]| -> Result<(), std::io::Error> {
        seen += ours(&Page::parse(&layout, bytes).unwrap());
        Ok(())
    };
    readers.drain(&mut sink).unwrap();
    let lost: u64 = cpus
        .iter()
        .map(|&c| inst.cpu_stats(c).unwrap().lost())
        .sum();
    println!("caught-up pump: {pumps} pumps, at most {worst} small pages per CPU per pump, {seen} events, {lost} lost");
    assert!(pumps > 1, "the child ended before a second pump");
    assert!(
        worst <= 1,
        "a pump read the writer's page {worst} times on one CPU"
    );
    assert!(
        seen <= CALLS as u64,
        "{seen} calls read, more than were made"
    );
    assert!(
        seen + lost >= CALLS as u64,
        "{} calls neither read nor counted lost",
        CALLS as u64 - seen - lost
    );
}
