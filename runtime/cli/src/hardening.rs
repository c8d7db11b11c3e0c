//! Process hardening: a host holding decrypted credentials and tokens must not leave them in a
//! core file (catalogue CR-15) or a panic message (CR-09). Called first thing by the binary.

use std::io;
use std::panic::PanicHookInfo;

/// Sets the core-file size limit to 0 and marks the process non-dumpable (which also keeps
/// other processes of the same user from attaching with ptrace or reading `/proc/<pid>/mem`).
pub fn disable_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument; the rest are ignored.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces the default panic message: a message built at run time (`panic!("{x}")`, an
/// `expect` on an error whose `Debug` shows a value) can carry whatever was in scope, a
/// credential included. The hook prints where the panic happened, the message only when it is
/// a literal of the source (`&'static str`), and the backtrace when `RUST_BACKTRACE` asks for
/// it (symbol names, never values).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| eprintln!("{}", panic_report(info))));
}

fn panic_report(info: &PanicHookInfo<'_>) -> String {
    let at = info
        .location()
        .map_or_else(|| "an unknown place".to_string(), ToString::to_string);
    let message = info
        .payload()
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("(message withheld: it was built at run time and could hold a secret)");
    let backtrace = std::backtrace::Backtrace::capture();
    let backtrace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
        _ => String::new(),
    };
    format!("error: airlock panicked at {at}: {message}{backtrace}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_dumps_are_off_after_hardening() {
        disable_core_dumps().expect("hardening applies");
        let mut limit = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
        assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
        // SAFETY: PR_GET_DUMPABLE takes no arguments and returns the flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }
}
