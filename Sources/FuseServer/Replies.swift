import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Logging

/// What an operation answers; `FuseMount.send` turns it into exactly one fuse_reply_* call.
enum Reply {
    case ok
    case none
    /// An error reply. ENOENT counts as `notFound`, every other errno as `errors` (see ServerCounters).
    case error(Int32)
    /// An errno that is part of a protocol, not a failure (ENOSYS for "no open support", ENODATA for an
    /// absent attribute, ERANGE for a too small xattr buffer): counted nowhere.
    case answer(Int32)
    /// A lookup entry whose inode already carries the +1 lookup count; undone if the reply is refused.
    case entry(fuse_entry_param)
    case attr(stat, Double)
    /// A NUL-terminated link target.
    case link([CChar])
    case open(UnsafeMutablePointer<fuse_file_info>, undo: () -> Void)
    case data(UnsafeRawPointer?, Int)
    /// A readdirplus buffer; every inode in `retained` got +1 and is undone if the reply is refused.
    case directoryPlus(UnsafeRawPointer?, Int, retained: [UInt64])
    case xattrSize(Int)
    case statfs(statvfs)
}

/// Per-worker scratch memory (the read/readdir/xattr reply buffer). Reached through a pthread key; only
/// its own worker thread touches it, and a reply built in it is sent before the worker takes the next
/// request.
final class WorkerScratch {
    private(set) var buffer: UnsafeMutableRawPointer? = nil
    private(set) var capacity = 0

    /// A buffer of at least `size` bytes (grown, never shrunk; at most the kernel's max request).
    func buffer(atLeast size: Int) -> UnsafeMutableRawPointer {
        if size > capacity || buffer == nil {
            free(buffer)
            capacity = max(size, 4096)
            buffer = malloc(capacity)!
        }
        return buffer!
    }

    deinit { free(buffer) }
}

extension FuseMount {
    /// Runs one request: counts it in flight, runs `body`, sends exactly one reply, counts it answered.
    /// A thrown Errno becomes an error reply; nothing else can escape `body` (typed throws).
    @inline(__always)
    func serveRequest(_ req: OpaquePointer, _ op: StaticString, _ ino: fuse_ino_t,
                      _ body: () throws(Errno) -> Reply) {
        inflightCount.add(1, ordering: .relaxed)
        if options.debug { logger.debug("\(op) ino=\(ino)") }
        let reply: Reply
        do {
            reply = try body()
        } catch {
            reply = .error(error.rawValue)
        }
        send(req, reply, op)
        inflightCount.subtract(1, ordering: .relaxed)
        requestCount.add(1, ordering: .relaxed)
    }

    /// Sends `reply` (one fuse_reply_* call, or none for FORGET) and undoes what a refused reply leaves
    /// behind (lookup counts taken, handles registered).
    func send(_ req: OpaquePointer, _ reply: Reply, _ op: StaticString) {
        var rc: Int32 = 0
        switch reply {
        case .ok:
            rc = fuse_reply_err(req, 0)
        case .none:
            fuse_reply_none(req)
        case .error(let e):
            if e == ENOENT {
                notFoundCount.add(1, ordering: .relaxed)
            } else {
                errorCount.add(1, ordering: .relaxed)
                if options.debug { logger.debug("\(op) -> \(Errno(e))") }
            }
            rc = fuse_reply_err(req, e)
        case .answer(let e):
            rc = fuse_reply_err(req, e)
        case .entry(var e):
            rc = fuse_reply_entry(req, &e)
            if rc != 0 && e.ino != 0 { table.forget(e.ino, count: 1) }
        case .attr(var st, let ttl):
            rc = fuse_reply_attr(req, &st, ttl)
        case .link(let target):
            rc = target.withUnsafeBufferPointer { fuse_reply_readlink(req, $0.baseAddress) }
        case .open(let fi, let undo):
            rc = fuse_reply_open(req, fi)
            if rc != 0 { undo() }   // the open was interrupted: the kernel will never release it
        case .data(let pointer, let count):
            rc = fuse_reply_buf(req, pointer?.assumingMemoryBound(to: CChar.self), count)
        case .directoryPlus(let pointer, let count, let retained):
            rc = fuse_reply_buf(req, pointer?.assumingMemoryBound(to: CChar.self), count)
            if rc != 0 { for ino in retained { table.forget(ino, count: 1) } }
        case .xattrSize(let size):
            rc = fuse_reply_xattr(req, size)
        case .statfs(var sv):
            rc = fuse_reply_statfs(req, &sv)
        }
        if rc != 0 && options.debug { logger.debug("\(op): reply refused by the kernel: \(Errno(-rc))") }
    }

    /// The node of an inode the kernel names; ESTALE for one it no longer holds.
    @inline(__always)
    func node(_ ino: fuse_ino_t) throws(Errno) -> FS.Node {
        guard let node = table.node(of: ino) else { throw Errno(ESTALE) }
        return node
    }

    /// This worker's scratch memory.
    var scratch: WorkerScratch {
        if let raw = pthread_getspecific(workerKey) {
            return Unmanaged<WorkerScratch>.fromOpaque(raw).takeUnretainedValue()
        }
        // A callback on a thread that is not one of our workers (should not happen): give it its own.
        let scratch = WorkerScratch()
        pthread_setspecific(workerKey, Unmanaged.passRetained(scratch).toOpaque())
        return scratch
    }

    func makeStat(_ ino: fuse_ino_t, _ a: NodeAttributes) -> stat {
        var st = stat()
        st.st_ino = numericCast(ino)
        st.st_mode = a.kind.modeBits | UInt32(a.permissions & 0o7777)
        st.st_nlink = numericCast(a.linkCount)
        st.st_uid = uid
        st.st_gid = gid
        st.st_size = Int(clamping: a.size)
        st.st_blksize = 131_072
        st.st_blocks = Int(clamping: (a.size + 511) / 512)
        let t = timespec(tv_sec: Int(a.mtime), tv_nsec: a.mtimeNanoseconds)
        st.st_atim = t
        st.st_mtim = t
        st.st_ctim = t
        return st
    }

    func makeEntry(_ ino: fuse_ino_t, _ a: NodeAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = ino
        e.generation = 0
        e.attr = makeStat(ino, a)
        e.attr_timeout = a.ttl
        e.entry_timeout = a.ttl
        return e
    }

    /// The size-0 probing protocol of getxattr/listxattr: size 0 -> the length; too small -> ERANGE.
    func xattrReply(_ value: [UInt8], size: Int) -> Reply {
        if size == 0 { return .xattrSize(value.count) }
        if size < value.count { return .answer(ERANGE) }
        let buffer = scratch.buffer(atLeast: max(value.count, 1))
        value.withUnsafeBytes { raw in
            if let base = raw.baseAddress { buffer.copyMemory(from: base, byteCount: raw.count) }
        }
        return .data(UnsafeRawPointer(buffer), value.count)
    }
}
