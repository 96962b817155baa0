import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Logging
import Synchronization
import Threads

/// The session pointer (struct fuse_session *). libfuse's receive/process functions are safe to call
/// from many threads at once; creation and destruction happen on one thread, bracketed by serve().
struct SessionRef: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// A mounted filesystem. Thread-safe. `serve()` blocks until the filesystem is unmounted (by `stop()`, by
/// `umount`/`fusermount3 -u`, or the kernel), and every request read from the kernel gets exactly one reply.
///
/// Serving: `options.threads` pthreads, each with its own fuse_buf and epoll instance watching the
/// session fd (O_NONBLOCK, EPOLLEXCLUSIVE: one idle worker is woken per request) and a wake eventfd.
/// Each worker reads with fuse_session_receive_buf and answers in fuse_session_process_buf before
/// reading again, so a request that was read is always answered. fuse_session_exit is never used to stop
/// workers (the libfuse < 3.18 shutdown trap); they are woken through the eventfd and joined.
///
/// Shutdown (`stop()`, SIGTERM/SIGINT/SIGHUP after `installSignalHandlers()`): lazy unmount first
/// (umount2(MNT_DETACH), or `fusermount3 -u -z` when not root), keep serving while readers that still
/// hold open files finish, until the kernel ends the session (ENODEV) or `options.shutdownGrace` runs
/// out; then the workers are woken and joined and the session destroyed (closing /dev/fuse aborts what
/// the kernel still queues: callers get an error, never a hang).
public final class FuseMount<FS: FuseFileSystem>: Sendable {
    public let filesystem: FS
    public let options: FuseMountOptions
    /// The canonical (realpath) mountpoint.
    public let mountpoint: String
    let logger: Logger
    let session: SessionRef
    let sessionFD: Int32
    /// The mount's "major:minor" from /proc/self/mountinfo, to recognise our own mount later.
    let device: String?
    let table: InodeTable<FS.Node>
    let openHandles = OpenHandleRegistry()
    let listings = ListingTable<FS.Node>()
    let box: CallbackBox
    let workerKey: pthread_key_t
    let uid: UInt32
    let gid: UInt32

    /// Wakes the supervisor (serve's own thread): stop() requested or a worker saw the session end.
    let controlFD: Int32
    /// Readable once the workers must exit; never drained, so every worker sees it.
    let wakeFD: Int32

    let requestCount = Atomic<Int>(0)
    let readCount = Atomic<Int>(0)
    let bytesReadCount = Atomic<Int>(0)
    let errorCount = Atomic<Int>(0)
    let notFoundCount = Atomic<Int>(0)
    let inflightCount = Atomic<Int>(0)

    let serveStarted = Atomic<Bool>(false)
    let stopRequested = Atomic<Bool>(false)
    let sessionEnded = Atomic<Bool>(false)
    let workersMustExit = Atomic<Bool>(false)
    let destroyed = Atomic<Bool>(false)
    let watchSignals = Atomic<Bool>(false)
    let pendingReadAhead = Atomic<Bool>(false)
    /// True while content may be pushed into the kernel's page cache (storeInKernelCache); turned off
    /// under the lock before the workers stop (see serve()).
    let pushesAllowed = Mutex<Bool>(true)
    let pushedBytes = Atomic<Int>(0)

    /// Creates the FUSE session and mounts it (ro, fsname, subtype gitfs, allow_other when asked,
    /// default_permissions). Requests queue in the kernel until `serve()` runs.
    /// (`@_optimize(none)`: runs once, and cross-module optimization of its body crashes swift 6.3's
    /// CopyPropagation pass.)
    @_optimize(none)
    public init(filesystem: FS, mountpoint: String, options: FuseMountOptions, logger: Logger) throws(FuseError) {
        let canonicalPath = try MountTable.checkMountpoint(mountpoint)
        let box = CallbackBox()
        var mountOptions = "ro,default_permissions,fsname=\(options.fsName),subtype=gitfs"
        if options.allowOther { mountOptions += ",allow_other" }
        let argStrings = ["gitfs", "-o", mountOptions]
        var argv: [UnsafeMutablePointer<CChar>?] = argStrings.map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var ops = makeLowLevelOperations()
        let se: OpaquePointer? = argv.withUnsafeMutableBufferPointer { buffer in
            var args = gitfs_fuse_args_init(Int32(argStrings.count), buffer.baseAddress)
            defer { fuse_opt_free_args(&args) }
            return fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size,
                                    Unmanaged.passUnretained(box).toOpaque())
        }
        guard let se else {
            throw FuseError(.sessionCreationFailed, mountpoint: mountpoint, detail: "options \(mountOptions)")
        }
        if fuse_session_mount(se, canonicalPath) != 0 {
            fuse_session_destroy(se)
            throw FuseError(.mountFailed, mountpoint: mountpoint)
        }
        let fd = fuse_session_fd(se)
        if gitfs_set_nonblocking(fd) != 0 {
            let e = errno
            _ = MountTable.lazyUnmount(canonicalPath)
            fuse_session_destroy(se)
            throw FuseError(.system, mountpoint: mountpoint, detail: "O_NONBLOCK on /dev/fuse: \(Errno(e))")
        }
        var key = pthread_key_t()
        pthread_key_create(&key, nil)

        self.filesystem = filesystem
        self.options = options
        self.mountpoint = canonicalPath
        self.logger = logger
        self.session = SessionRef(pointer: se)
        self.sessionFD = fd
        self.device = MountTable.entries(at: canonicalPath).last(where: { $0.fsType == "fuse.gitfs" })?.device
        self.table = InodeTable(root: filesystem.rootNode)
        self.box = box
        self.workerKey = key
        self.uid = geteuid()
        self.gid = getegid()
        self.controlFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        self.wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        logger.info("mounted", metadata: ["mountpoint": "\(canonicalPath)", "device": "\(device ?? "?")",
                                          "threads": "\(options.threads)"])
    }

    deinit {
        if !destroyed.exchange(true, ordering: .acquiringAndReleasing) {
            unmountIfStillOurs()
            fuse_session_destroy(session.pointer)
        }
        releaseOrphanedHandles()
        close(controlFD)
        close(wakeFD)
        pthread_key_delete(workerKey)
    }

    /// Request counters, each read atomically (the set is not one snapshot).
    public var counters: ServerCounters {
        ServerCounters(requests: requestCount.load(ordering: .relaxed),
                       pushedBytes: pushedBytes.load(ordering: .relaxed),
                       reads: readCount.load(ordering: .relaxed),
                       bytesRead: bytesReadCount.load(ordering: .relaxed),
                       errors: errorCount.load(ordering: .relaxed),
                       notFound: notFoundCount.load(ordering: .relaxed),
                       inflight: inflightCount.load(ordering: .relaxed))
    }

    /// Inodes the kernel currently holds (plus the root). For tests and stats.
    public var inodeCount: Int { table.count }

    // MARK: serving

    /// Runs `options.threads` workers; returns after the session ended and all workers joined; unmounts
    /// if still mounted and destroys the session. Only the first call serves; later calls return at once.
    public func serve() {
        guard !serveStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        box.table = makeRequestTable()
        let wanted = max(1, options.threads)
        let workers = WorkerThreads.start(count: wanted) { [self] index in self.workerLoop(index: index) }
        if workers.count < wanted { logger.error("started only \(workers.count) of \(wanted) FUSE worker threads") }
        if workers.count == 0 { sessionEnded.store(true, ordering: .releasing) }
        logger.debug("serving with \(workers.count) workers")

        supervise()

        // No push may be in progress once the workers stop: a push waits for pages that a pending READ
        // holds locked, and only a worker can answer that READ.
        pushesAllowed.withLock { $0 = false }
        workersMustExit.store(true, ordering: .releasing)
        signalEventFD(wakeFD)
        workers.join()
        if !destroyed.exchange(true, ordering: .acquiringAndReleasing) {
            unmountIfStillOurs()
            fuse_session_destroy(session.pointer)
        }
        releaseOrphanedHandles()
        logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)", "requests": "\(counters.requests)"])
    }

    /// Waits until the kernel ended the session, or stop() was requested and then either the session
    /// ended or the grace period ran out.
    private func supervise() {
        var deadline: UInt64? = nil
        while true {
            if sessionEnded.load(ordering: .acquiring) { return }
            if stopRequested.load(ordering: .acquiring) {
                let now = MonotonicTime.now.nanoseconds
                if deadline == nil { deadline = now + UInt64(max(0, options.shutdownGrace) * 1e9) }
                if now >= deadline! {
                    logger.warning("shutdown grace of \(options.shutdownGrace)s over with files still open: closing the FUSE connection (their readers get an error)")
                    return
                }
            }
            var fds = [pollfd(fd: controlFD, events: Int16(POLLIN), revents: 0)]
            let watching = watchSignals.load(ordering: .acquiring) && !stopRequested.load(ordering: .acquiring)
            if watching { fds.append(pollfd(fd: processSignalFD, events: Int16(POLLIN), revents: 0)) }
            var timeout: Int32 = -1
            if let deadline {
                let now = MonotonicTime.now.nanoseconds
                timeout = now >= deadline ? 0 : Int32(min(UInt64(Int32.max), (deadline - now) / 1_000_000 + 1))
            } else if !watching {
                timeout = 1000   // re-check watchSignals, set by installSignalHandlers() after serve started
            }
            let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if n < 0 && errno != EINTR {
                logger.error("poll failed in the FUSE supervisor: \(Errno(errno))")
                sleepBriefly()
            }
            drainEventFD(controlFD)
            if watching && fds.count > 1 && fds[1].revents & Int16(POLLIN) != 0 {
                logger.info("signal received: unmounting \(mountpoint)")
                stop()
            }
        }
    }

    private func workerLoop(index: Int) {
        let scratch = WorkerScratch()
        pthread_setspecific(workerKey, Unmanaged.passUnretained(scratch).toOpaque())
        defer { pthread_setspecific(workerKey, nil) }
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard ep >= 0 else {
            logger.error("epoll_create1 failed in FUSE worker \(index): \(Errno(errno))")
            return
        }
        defer { close(ep) }
        if gitfs_epoll_add(ep, sessionFD, 1, 0) != 0 || gitfs_epoll_add(ep, wakeFD, 0, 1) != 0 {
            logger.error("epoll_ctl failed in FUSE worker \(index): \(Errno(errno))")
            return
        }
        var buf = fuse_buf()
        defer { free(buf.mem) }
        var tags = [UInt64](repeating: 0, count: 8)
        let se = session.pointer
        while !workersMustExit.load(ordering: .acquiring) {
            let r = fuse_session_receive_buf(se, &buf)
            if r > 0 {
                fuse_session_process_buf(se, &buf)
                if pendingReadAhead.load(ordering: .relaxed), pendingReadAhead.exchange(false, ordering: .relaxed) {
                    applyReadAhead()
                }
                continue
            }
            if r == -EAGAIN || r == -EINTR {
                let n = tags.withUnsafeMutableBufferPointer { gitfs_epoll_wait_tags(ep, $0.baseAddress, 8, -1) }
                if n < 0 && errno != EINTR {
                    logger.error("epoll_wait failed in FUSE worker \(index): \(Errno(errno))")
                    endSession()
                    return
                }
                continue
            }
            if r == 0 || fuse_session_exited(se) != 0 {
                logger.debug("FUSE worker \(index): the kernel ended the session")
            } else {
                logger.error("reading /dev/fuse failed in worker \(index): \(Errno(-r))")
            }
            endSession()
            return
        }
    }

    /// True when the kernel holds an inode for `node` now (it was looked up or listed and not forgotten).
    public func holdsInode(of node: FS.Node) -> Bool {
        table.existingIno(of: node) != nil
    }

    /// Copies `bytes` into the kernel's page cache of `node` at `offset` (`fuse_lowlevel_notify_store`),
    /// so reads of that range are answered by the kernel without a request. Only for a node the kernel
    /// holds now (false otherwise, and false once the mount is stopping). The bytes must be exactly the
    /// node's content at that offset: the kernel serves them as the file. Thread-safe; pushes are
    /// serialized with each other and with shutdown.
    public func storeInKernelCache(_ node: FS.Node, offset: Int, bytes: UnsafeRawBufferPointer) -> Bool {
        guard let ino = table.existingIno(of: node), ino != InodeTable<FS.Node>.rootIno else { return false }
        return pushesAllowed.withLock { allowed -> Bool in
            guard allowed, !sessionEnded.load(ordering: .acquiring) else { return false }
            let rc = gitfs_notify_store(session.pointer, ino, off_t(offset), bytes.baseAddress, bytes.count)
            if rc != 0 {
                if options.debug { logger.debug("notify_store ino=\(ino): \(Errno(-rc))") }
                return false
            }
            pushedBytes.add(bytes.count, ordering: .relaxed)
            return true
        }
    }

    /// Marks the session over (kernel unmount/abort, or a fatal error) and wakes the supervisor and the
    /// other workers.
    private func endSession() {
        sessionEnded.store(true, ordering: .releasing)
        signalEventFD(controlFD)
        workersMustExit.store(true, ordering: .releasing)
        signalEventFD(wakeFD)
    }

    /// Begins a clean shutdown from any thread: lazy unmount, then serve() drains and returns (see the
    /// type's documentation). Idempotent; returns at once.
    public func stop() {
        guard !stopRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if !destroyed.load(ordering: .acquiring) {
            unmountIfStillOurs()
        }
        signalEventFD(controlFD)
    }

    /// SIGTERM/SIGINT/SIGHUP -> stop(). The handler only writes to an eventfd (async-signal-safe); serve()'s
    /// own thread watches it. Several mounts in one process all stop on a signal.
    public func installSignalHandlers() {
        installProcessSignalHandlers()
        watchSignals.store(true, ordering: .releasing)
        signalEventFD(controlFD)
    }

    /// Lazily unmounts the mountpoint if /proc/self/mountinfo still shows our mount there.
    func unmountIfStillOurs() {
        let present = MountTable.entries(at: mountpoint).contains { entry in
            entry.fsType == "fuse.gitfs" && (device == nil || entry.device == device)
        }
        guard present else { return }
        let rc = MountTable.lazyUnmount(mountpoint)
        if rc != 0 {
            logger.error("\(FuseError(.unmountFailed, mountpoint: mountpoint, detail: String(describing: Errno(rc))))")
        } else {
            logger.debug("lazily unmounted \(mountpoint)")
        }
    }

    /// Raises the bdi read-ahead (the kernel only lowers it at INIT, so this runs after INIT's reply).
    private func applyReadAhead() {
        guard options.readAheadBytes > 0, let device else { return }
        let path = "/sys/class/bdi/\(device)/read_ahead_kb"
        let fd = path.withCString { Glibc.open($0, O_WRONLY | O_CLOEXEC) }
        guard fd >= 0 else {
            logger.debug("cannot open \(path): \(Errno(errno))")
            return
        }
        defer { close(fd) }
        let text = Array("\(max(4, options.readAheadBytes / 1024))\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written != text.count { logger.debug("cannot set \(path): \(Errno(errno))") }
    }
}
