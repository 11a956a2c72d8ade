//! `isolation: sandbox`: a job in its own PID and mount namespaces (and a user namespace when
//! the worker is not root), optionally without network.
//!
//! Inside, the job sees only its own processes (a fresh `/proc`), a private `/tmp` and
//! `/dev/shm`, and a file system that is read-only everywhere but its own directory. Its
//! shell is the namespace's init: when it exits, or its worker dies, the kernel kills every
//! process the job started. The price: pids inside are not the host's, and the shell (as init)
//! gets a SIGTERM only if it traps it; the job's other processes get it as usual.
//!
//! Between fork and exec (all async-signal-safe, nothing allocated): `unshare`, the identity
//! uid/gid maps of a user namespace, then a second fork. The first child stays outside as the
//! *keeper*: it ignores the termination signals meant for the job, waits for the namespace's
//! init and exits as it did, so the worker sees the job's own exit status. The second child is
//! the init: it builds the mounts, then returns to be replaced by `bash`.
//!
//! Where the kernel refuses namespaces (GitHub's Ubuntu 24.04 runners restrict unprivileged
//! user namespaces through AppArmor), [`available`] says why and how to allow them, and such a
//! job ends as an error: never run without the isolation it asked for.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// `mount_setattr(2)` (Linux 5.12): the same number on every architecture we release for.
const SYS_MOUNT_SETATTR: libc::c_long = 442;
/// `MOUNT_ATTR_RDONLY` of `mount_setattr(2)`.
const MOUNT_ATTR_RDONLY: u64 = 1;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Everything the child needs, prepared before the fork.
pub struct Sandbox {
    dir: CString,
    /// A copy of `dir` that `mkdir -p` cuts into prefixes in place.
    scratch: Vec<u8>,
    userns: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    network: bool,
}

impl Sandbox {
    /// A sandbox for a job running in `dir` (an absolute path); `network: false` gives it a
    /// network namespace of its own with only a loopback interface.
    pub fn new(dir: &Path, network: bool) -> io::Result<Sandbox> {
        let dir = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: getuid, getgid and geteuid cannot fail.
        let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
        Ok(Sandbox {
            scratch: dir.as_bytes_with_nul().to_vec(),
            dir,
            userns: euid != 0,
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            network,
        })
    }

    /// Enters the sandbox, in the child between fork and exec; returns in the namespace's init,
    /// which then execs the job. Async-signal-safe, allocates nothing.
    pub fn enter(&mut self) -> io::Result<()> {
        let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
        if self.userns {
            flags |= libc::CLONE_NEWUSER;
        }
        if !self.network {
            flags |= libc::CLONE_NEWNET;
        }
        // SAFETY: unshare takes flags only.
        check(unsafe { libc::unshare(flags) })?;
        if self.userns {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", &self.uid_map)?;
            write_file(c"/proc/self/gid_map", &self.gid_map)?;
        }
        // SAFETY: fork in the single-threaded child; both sides only make async-signal-safe
        // calls afterwards.
        let init = check(unsafe { libc::fork() })?;
        if init > 0 {
            keep(init);
        }
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
        self.mount_all()?;
        if !self.network {
            loopback_up()?;
        }
        Ok(())
    }

    /// The mounts, in the namespace's init: private propagation, a fresh `/proc`, everything
    /// read-only, private `/tmp` and `/dev/shm`, the job's directory writable at its path.
    fn mount_all(&mut self) -> io::Result<()> {
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: mount with valid NUL-terminated strings or nulls where the call allows.
        unsafe {
            let recursive_private = libc::MS_REC | libc::MS_PRIVATE;
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                recursive_private,
                std::ptr::null(),
            ))?;
        }
        // The job's directory, held open before /tmp (where it may be) is covered.
        // SAFETY: open with a NUL-terminated path.
        let dir_fd = check(unsafe {
            libc::open(
                self.dir.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: as above.
        unsafe {
            let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check(libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                hardened,
                std::ptr::null(),
            ))?;
        }
        set_readonly(c"/", true)?;
        for tmp in [c"/tmp", c"/dev/shm"] {
            // SAFETY: as above; the options string is NUL-terminated.
            let r = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    tmp.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777".as_ptr().cast(),
                )
            };
            // /dev/shm may not exist; /tmp must.
            if r != 0 && tmp == c"/tmp" {
                return Err(io::Error::last_os_error());
            }
        }
        self.mkdir_parents()?;
        let mut source = [0u8; 32];
        fd_path(dir_fd, &mut source);
        // SAFETY: `source` is NUL-terminated by fd_path; `dir` is a valid C string.
        unsafe {
            let bind = libc::MS_BIND | libc::MS_REC;
            check(libc::mount(
                source.as_ptr().cast(),
                self.dir.as_ptr(),
                none,
                bind,
                std::ptr::null(),
            ))?;
        }
        set_readonly(&self.dir, false)?;
        // SAFETY: chdir with a NUL-terminated path; close of our own descriptor.
        unsafe {
            check(libc::chdir(self.dir.as_ptr()))?;
            libc::close(dir_fd);
        }
        Ok(())
    }

    /// `mkdir -p` of the job's directory (it is missing when it was under the new `/tmp`).
    fn mkdir_parents(&mut self) -> io::Result<()> {
        let len = self.scratch.len() - 1;
        for end in 1..=len {
            if end < len && self.scratch[end] != b'/' {
                continue;
            }
            let saved = self.scratch[end];
            self.scratch[end] = 0;
            // SAFETY: `scratch` is NUL-terminated at `end`.
            let r = unsafe { libc::mkdir(self.scratch.as_ptr().cast(), 0o755) };
            let err = io::Error::last_os_error();
            self.scratch[end] = saved;
            // EROFS: an existing directory on the read-only tree.
            if r != 0 && !matches!(err.raw_os_error(), Some(libc::EEXIST | libc::EROFS)) {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Whether jobs can be sandboxed here: checked once by starting `true` in a sandbox. The error
/// says why not and what allows it.
pub fn available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a probe directory: {e}"))?;
    let mut sandbox = Sandbox::new(dir.path(), true).map_err(|e| e.to_string())?;
    let mut probe = std::process::Command::new("true");
    probe.current_dir(dir.path());
    // SAFETY: `enter` is async-signal-safe and allocates nothing.
    unsafe { probe.pre_exec(move || sandbox.enter()) };
    match probe.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("a sandboxed probe exited with {status}")),
        Err(e) => Err(format!(
            "the kernel refused the namespaces ({e}); on Ubuntu 23.10 and later (GitHub's \
             ubuntu-24.04 runners) allow unprivileged user namespaces with `sudo sysctl \
             kernel.apparmor_restrict_unprivileged_userns=0`, or run the worker as root"
        )),
    }
}

/// The keeper: waits for the namespace's init and exits as it did. Never returns.
fn keep(init: libc::pid_t) -> ! {
    // SAFETY: close_range, signal dispositions, waitpid, setrlimit, kill and _exit are
    // async-signal-safe.
    unsafe {
        // It never execs: holding the descriptors the spawning process watches for the exec
        // (and the job's output pipe) would keep it waiting for as long as the job runs.
        if libc::syscall(libc::SYS_close_range, 0, libc::c_uint::MAX, 0) != 0 {
            for fd in 0..1024 {
                libc::close(fd);
            }
        }
        // Meant for the job: the worker signals the whole group, the init's children included.
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(signal, libc::SIG_IGN);
        }
        let mut status = 0;
        while libc::waitpid(init, &mut status, 0) == -1 {
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// Sets (or clears) read-only on the mount at `path` and every mount below it.
fn set_readonly(path: &std::ffi::CStr, readonly: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if readonly { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid path and a `mount_attr` of the size passed.
    let r = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r as libc::c_int).map(drop)
}

/// Brings the new network namespace's loopback interface up.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket, ioctl on a zeroed ifreq naming "lo", and close are async-signal-safe.
    unsafe {
        let sock = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        req.ifr_ifru.ifru_flags =
            (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        libc::close(sock);
        check(r).map(drop)
    }
}

/// Writes `data` to the file at `path` (a /proc control file).
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open, write and close with valid pointers and lengths.
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if written != data.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes `/proc/self/fd/<fd>` and a NUL into `out`, without allocating.
fn fd_path(fd: libc::c_int, out: &mut [u8; 32]) {
    let prefix = b"/proc/self/fd/";
    out[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut count) = (fd.unsigned_abs(), 0);
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        out[prefix.len() + i] = digits[count - 1 - i];
    }
    out[prefix.len() + count] = 0;
}

/// A libc result: -1 becomes the last OS error.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
