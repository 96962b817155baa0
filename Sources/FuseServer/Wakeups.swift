import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Synchronization

// The eventfds and signal handling that wake the supervisor and the workers of a FuseMount.

/// Writes 1 to an eventfd (write(2), EINTR retried).
func signalEventFD(_ fd: Int32) {
    var one: UInt64 = 1
    while write(fd, &one, 8) < 0 && errno == EINTR {}
}

/// Reads an eventfd's counter to zero (non-blocking fd).
func drainEventFD(_ fd: Int32) {
    var value: UInt64 = 0
    while read(fd, &value, 8) < 0 && errno == EINTR {}
}

func sleepBriefly() {
    var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
    nanosleep(&ts, nil)
}

// MARK: signals

/// The process-wide eventfd the signal handler writes to; created before any handler is installed.
let processSignalFD: Int32 = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))

private let signalsInstalled = Mutex(false)

/// Installs SIGTERM/SIGINT/SIGHUP handlers (once per process) that write to `processSignalFD`.
func installProcessSignalHandlers() {
    signalsInstalled.withLock { installed in
        guard !installed else { return }
        _ = processSignalFD   // initialise before the handler can run
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in
                let saved = errno
                var one: UInt64 = 1
                _ = write(processSignalFD, &one, 8)
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
        // A starter may have had these signals blocked (blocked masks are inherited): unblock them in
        // this thread, which stays alive for the whole mount, so they can always be delivered.
        var set = sigset_t()
        sigemptyset(&set)
        for sig in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, sig) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        installed = true
    }
}
