//! An eventfd that wakes the sender's `poll` when the source pushes frames,
//! so the sender sleeps until there is work instead of polling a queue.

use std::io;

/// A wake-up descriptor.
#[derive(Debug)]
pub struct Waker {
    fd: i32,
}

impl Waker {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker { fd })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Makes the descriptor readable.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. A full counter (EAGAIN)
        // still leaves the descriptor readable, which is all that matters.
        let _ = unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
    }

    /// Drains the counter.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN when already clear.
        let _ = unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}
