//! A real KVM guest, run through /dev/kvm by this test: real-mode code doing
//! K port writes then HLT, recorded with `strata record --events kvm,sched`;
//! `strata vm report --json` must count exactly K `kvm_pio` events and K I/O
//! userspace exits for that VM. Skips (one line) without root, tracefs, a
//! usable /dev/kvm or the kvm tracepoints.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::skip_unless_root_with_tracefs;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Port writes the guest makes.
const K: u32 = 37;
/// The port it writes to.
const PORT: u16 = 0x3f0;

const KVMIO: u64 = 0xAE;
const fn io(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}
const fn iow(nr: u64, size: u64) -> u64 {
    (1 << 30) | (size << 16) | (KVMIO << 8) | nr
}
const fn ior(nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | (KVMIO << 8) | nr
}
const KVM_GET_API_VERSION: u64 = io(0x00);
const KVM_CREATE_VM: u64 = io(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
const KVM_CREATE_VCPU: u64 = io(0x41);
const KVM_SET_USER_MEMORY_REGION: u64 = iow(0x46, 32);
const KVM_RUN: u64 = io(0x80);
const KVM_GET_REGS: u64 = ior(0x81, 144);
const KVM_SET_REGS: u64 = iow(0x82, 144);
const KVM_GET_SREGS: u64 = ior(0x83, 312);
const KVM_SET_SREGS: u64 = iow(0x84, 312);
const KVM_EXIT_IO: u32 = 2;
const KVM_EXIT_HLT: u32 = 5;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
struct MemRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

fn ioctl(fd: &OwnedFd, req: u64, arg: u64) -> Result<i32, String> {
    // SAFETY: each request is given an argument of the size it encodes.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(format!(
            "ioctl 0x{req:x}: {}",
            std::io::Error::last_os_error()
        ))
    } else {
        Ok(r)
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Mapped memory, unmapped on drop.
struct Mapping(*mut libc::c_void, usize);

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what mmap returned, once.
        unsafe { libc::munmap(self.0, self.1) };
    }
}

/// Runs the guest on the calling thread: returns (I/O exits, HLT seen), or
/// why KVM refused.
fn run_guest() -> Result<(u32, bool), String> {
    let path = c"/dev/kvm";
    // SAFETY: a plain open of a NUL-terminated path.
    let kvm = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if kvm < 0 {
        return Err(format!("/dev/kvm: {}", std::io::Error::last_os_error()));
    }
    let kvm = owned(kvm);
    if ioctl(&kvm, KVM_GET_API_VERSION, 0)? != 12 {
        return Err("KVM API version is not 12".into());
    }
    let vm = owned(ioctl(&kvm, KVM_CREATE_VM, 0)?);
    let mem_size = 0x4000usize;
    // SAFETY: anonymous private mapping, checked below.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mem_size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        return Err("mmap of guest memory failed".into());
    }
    let mem = Mapping(mem, mem_size);
    // mov cx, K; mov dx, PORT; l: mov al, cl; out dx, al; loop l; hlt
    let [k0, k1] = (K as u16).to_le_bytes();
    let [p0, p1] = PORT.to_le_bytes();
    let code = [
        0xb9, k0, k1, 0xba, p0, p1, 0x88, 0xc8, 0xee, 0xe2, 0xfb, 0xf4,
    ];
    // SAFETY: the mapping is mem_size bytes and the code fits at 0x1000.
    unsafe {
        std::ptr::copy_nonoverlapping(code.as_ptr(), (mem.0 as *mut u8).add(0x1000), code.len())
    };
    let region = MemRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: mem_size as u64,
        userspace_addr: mem.0 as u64,
    };
    ioctl(
        &vm,
        KVM_SET_USER_MEMORY_REGION,
        &region as *const MemRegion as u64,
    )?;
    let vcpu = owned(ioctl(&vm, KVM_CREATE_VCPU, 0)?);
    let run_size = ioctl(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0)? as usize;
    // SAFETY: the vCPU fd's shared run area, of the size KVM gives.
    let run = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            run_size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            vcpu.as_raw_fd(),
            0,
        )
    };
    if run == libc::MAP_FAILED {
        return Err("mmap of kvm_run failed".into());
    }
    let run = Mapping(run, run_size);
    let mut sregs = [0u8; 312];
    ioctl(&vcpu, KVM_GET_SREGS, sregs.as_mut_ptr() as u64)?;
    // cs: base (u64) at 0, selector (u16) at 12: flat real mode at 0.
    sregs[0..8].fill(0);
    sregs[12..14].fill(0);
    ioctl(&vcpu, KVM_SET_SREGS, sregs.as_ptr() as u64)?;
    let mut regs = [0u64; 18];
    ioctl(&vcpu, KVM_GET_REGS, regs.as_mut_ptr() as u64)?;
    regs.fill(0);
    regs[16] = 0x1000; // rip
    regs[17] = 0x2; // rflags
    ioctl(&vcpu, KVM_SET_REGS, regs.as_ptr() as u64)?;
    let mut io_exits = 0;
    for _ in 0..10 * K {
        ioctl(&vcpu, KVM_RUN, 0)?;
        // SAFETY: kvm_run is at least a page; exit_reason is at offset 8.
        let reason = unsafe { *((run.0 as *const u8).add(8) as *const u32) };
        match reason {
            KVM_EXIT_IO => io_exits += 1,
            KVM_EXIT_HLT => return Ok((io_exits, true)),
            other => return Err(format!("unexpected KVM exit {other}")),
        }
    }
    Ok((io_exits, false))
}

/// `strata record`, stopped (SIGINT) and reaped on drop.
struct Recorder(Child);

impl Drop for Recorder {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_recorder(out: &Path) -> Recorder {
    let mut child = Command::new(STRATA)
        .args(["record", "--quiet", "--events", "kvm,sched", "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let stderr = child.stderr.take().expect("piped");
    let rec = Recorder(child);
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("recording") => break,
            Some(Ok(_)) => {}
            _ => panic!("strata record did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    rec
}

#[test]
fn a_real_kvm_guest_shows_its_port_writes() {
    if !skip_unless_root_with_tracefs() {
        return;
    }
    if !Path::new("/sys/kernel/tracing/events/kvm/kvm_pio").exists() {
        println!("SKIP: no kvm tracepoints (kvm module not loaded)");
        return;
    }
    // A dry run first: if KVM refuses here, say why and skip.
    match std::thread::spawn(run_guest).join().expect("guest thread") {
        Ok((n, true)) if n == K => {}
        Ok(r) => panic!("the guest did not run as written: {r:?}"),
        Err(e) => {
            println!("SKIP: /dev/kvm refuses a guest here: {e}");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let rec = start_recorder(&trace);
    let vcpu = std::thread::Builder::new()
        .name("CPU 0/KVM".into())
        .spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            (tid, run_guest())
        })
        .unwrap();
    let (tid, res) = vcpu.join().unwrap();
    assert_eq!(res, Ok((K, true)));
    std::thread::sleep(Duration::from_millis(300));
    drop(rec);
    let hints = format!(
        r#"[{{"name":"kvm-test","uuid":"11111111-2222-3333-4444-555555555555","qemu_pid":{},"vcpus":[{{"id":0,"tid":{tid}}}]}}]"#,
        std::process::id()
    );
    // Beside the trace: the CTF reader takes every file inside it for a stream.
    std::fs::write(dir.path().join("vm-hints.json"), hints).unwrap();
    let out = Command::new(STRATA)
        .args(["vm", "report", "--json"])
        .arg(&trace)
        .output()
        .expect("strata vm report runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "strata vm report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let vms = doc["hosts"][0]["vms"].as_array().expect("vms");
    let vm = vms
        .iter()
        .find(|v| v["name"] == "kvm-test")
        .unwrap_or_else(|| panic!("no kvm-test VM in {stdout}"));
    assert_eq!(vm["pio"]["count"], K, "{stdout}");
    assert_eq!(vm["pio"]["ports"][0][0], PORT as u32);
    let io = vm["userspace_exits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "user:IO")
        .unwrap_or_else(|| panic!("no IO userspace exits in {stdout}"));
    assert_eq!(io["count"], K, "{stdout}");
    let hlt = vm["userspace_exits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "user:HLT");
    assert_eq!(hlt.map(|h| h["count"].clone()), Some(1.into()));
    assert_eq!(vm["vcpus"][0]["tid"], tid);
    let text = Command::new(STRATA)
        .args(["vm", "report"])
        .arg(&trace)
        .output()
        .expect("strata vm report runs");
    let text = String::from_utf8_lossy(&text.stdout);
    println!("{text}");
    assert!(text.contains("kvm-test"), "{text}");
    assert!(
        text.contains(&format!("port I/O exits (kvm_pio): {K} (0x{PORT:x}: {K})")),
        "{text}"
    );
}
