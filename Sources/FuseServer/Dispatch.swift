import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Logging
import Synchronization

/// The request callbacks of one mount, as closures made in `serve()`, where the filesystem type is
/// known: with cross-module optimization they run code specialized for it. (Through a protocol
/// existential, every request ran FuseMount's unspecialized generic code: node copies, hashes and
/// dictionary probes through witness tables, a third of a warm `find`'s server time.)
struct RequestTable {
    var initConnection: (UnsafeMutablePointer<fuse_conn_info>) -> Void
    var lookup: (OpaquePointer, fuse_ino_t, UnsafePointer<CChar>) -> Void
    var forget: (OpaquePointer, fuse_ino_t, UInt64) -> Void
    var forgetMulti: (OpaquePointer, Int, UnsafeMutablePointer<fuse_forget_data>?) -> Void
    var getattr: (OpaquePointer, fuse_ino_t) -> Void
    var readlink: (OpaquePointer, fuse_ino_t) -> Void
    var open: (OpaquePointer, fuse_ino_t, UnsafeMutablePointer<fuse_file_info>) -> Void
    var read: (OpaquePointer, fuse_ino_t, Int, off_t, UnsafeMutablePointer<fuse_file_info>) -> Void
    var release: (OpaquePointer, fuse_ino_t, UnsafeMutablePointer<fuse_file_info>) -> Void
    var opendir: (OpaquePointer, fuse_ino_t, UnsafeMutablePointer<fuse_file_info>) -> Void
    var readdir: (OpaquePointer, fuse_ino_t, Int, off_t, UnsafeMutablePointer<fuse_file_info>, Bool) -> Void
    var releasedir: (OpaquePointer, fuse_ino_t, UnsafeMutablePointer<fuse_file_info>) -> Void
    var statfs: (OpaquePointer, fuse_ino_t) -> Void
    var getxattr: (OpaquePointer, fuse_ino_t, UnsafePointer<CChar>, Int) -> Void
    var listxattr: (OpaquePointer, fuse_ino_t, Int) -> Void
    var access: (OpaquePointer, fuse_ino_t, Int32) -> Void
    var readOnly: (OpaquePointer, StaticString, fuse_ino_t) -> Void
}

/// The userdata given to fuse_session_new. `table` is set once by serve() before any worker starts
/// (thread creation orders it before every callback); the mount outlives the session (it destroys it).
final class CallbackBox: @unchecked Sendable {
    var table: RequestTable? = nil
}

@inline(__always)
private func handler(_ req: OpaquePointer?) -> RequestTable {
    Unmanaged<CallbackBox>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue().table.unsafelyUnwrapped
}

/// The fuse_lowlevel_ops table: every callback forwards to the RequestTable behind the userdata.
/// Unset operations are answered ENOSYS by libfuse (flush on purpose: the kernel then stops sending it).
func makeLowLevelOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { userdata, conn in
        Unmanaged<CallbackBox>.fromOpaque(userdata!).takeUnretainedValue().table!.initConnection(conn!)
    }
    ops.lookup = { req, parent, name in handler(req).lookup(req!, parent, name!) }
    ops.forget = { req, ino, n in handler(req).forget(req!, ino, n) }
    ops.forget_multi = { req, count, forgets in handler(req).forgetMulti(req!, count, forgets) }
    ops.getattr = { req, ino, _ in handler(req).getattr(req!, ino) }
    ops.readlink = { req, ino in handler(req).readlink(req!, ino) }
    ops.open = { req, ino, fi in handler(req).open(req!, ino, fi!) }
    ops.read = { req, ino, size, off, fi in handler(req).read(req!, ino, size, off, fi!) }
    ops.release = { req, ino, fi in handler(req).release(req!, ino, fi!) }
    ops.opendir = { req, ino, fi in handler(req).opendir(req!, ino, fi!) }
    ops.readdir = { req, ino, size, off, fi in handler(req).readdir(req!, ino, size, off, fi!, false) }
    ops.readdirplus = { req, ino, size, off, fi in handler(req).readdir(req!, ino, size, off, fi!, true) }
    ops.releasedir = { req, ino, fi in handler(req).releasedir(req!, ino, fi!) }
    ops.statfs = { req, ino in handler(req).statfs(req!, ino) }
    ops.getxattr = { req, ino, name, size in handler(req).getxattr(req!, ino, name!, size) }
    ops.listxattr = { req, ino, size in handler(req).listxattr(req!, ino, size) }
    ops.access = { req, ino, mask in handler(req).access(req!, ino, mask) }
    // Every write-ish operation: EROFS.
    ops.setattr = { req, ino, _, _, _ in handler(req).readOnly(req!, "setattr", ino) }
    ops.mknod = { req, parent, _, _, _ in handler(req).readOnly(req!, "mknod", parent) }
    ops.mkdir = { req, parent, _, _ in handler(req).readOnly(req!, "mkdir", parent) }
    ops.unlink = { req, parent, _ in handler(req).readOnly(req!, "unlink", parent) }
    ops.rmdir = { req, parent, _ in handler(req).readOnly(req!, "rmdir", parent) }
    ops.symlink = { req, _, parent, _ in handler(req).readOnly(req!, "symlink", parent) }
    ops.rename = { req, parent, _, _, _, _ in handler(req).readOnly(req!, "rename", parent) }
    ops.link = { req, ino, _, _ in handler(req).readOnly(req!, "link", ino) }
    ops.write = { req, ino, _, _, _, _ in handler(req).readOnly(req!, "write", ino) }
    ops.create = { req, parent, _, _, _ in handler(req).readOnly(req!, "create", parent) }
    ops.setxattr = { req, ino, _, _, _, _ in handler(req).readOnly(req!, "setxattr", ino) }
    ops.removexattr = { req, ino, _ in handler(req).readOnly(req!, "removexattr", ino) }
    ops.fallocate = { req, ino, _, _, _, _ in handler(req).readOnly(req!, "fallocate", ino) }
    ops.copy_file_range = { req, _, _, _, ino, _, _, _, _ in handler(req).readOnly(req!, "copy_file_range", ino) }
    return ops
}

/// What a handler answers; `send` turns it into exactly one fuse_reply_* call.
enum Reply {
    case ok
    case none
    case error(Int32, counted: Bool)
    /// A lookup entry whose inode already carries the +1 lookup count; undone if the reply is refused.
    case entry(fuse_entry_param)
    case attr(stat, Double)
    case link([CChar])
    case open(UnsafeMutablePointer<fuse_file_info>, undo: () -> Void)
    case data(UnsafeRawPointer?, Int)
    /// A readdirplus buffer; every inode in `retained` got +1 and is undone if the reply is refused.
    case directoryPlus(UnsafeRawPointer?, Int, retained: [UInt64])
    case xattrSize(Int)
    case statfs(statvfs)
}

/// The handle of an open file as stored in fi->fh (an Unmanaged, retained until release).
final class HandleBox<Handle: Sendable> {
    let handle: Handle
    init(_ handle: Handle) { self.handle = handle }
}

/// An open directory: the listing taken once at opendir, served by index (offset = index + 1;
/// indexes 0 and 1 are `.` and `..`).
final class DirectoryHandle<Node: Hashable & Sendable>: @unchecked Sendable {  // immutable
    let entries: [DirectoryEntry<Node>]
    let names: [[CChar]]   // NUL-terminated
    init(entries: [DirectoryEntry<Node>]) {
        self.entries = entries
        self.names = entries.map { entry in entry.name.map { CChar(bitPattern: $0) } + [0] }
    }
}

extension FuseMount {
    /// The callbacks of this mount (see RequestTable). The closures hold the mount unowned: it outlives
    /// its session.
    func makeRequestTable() -> RequestTable {
        RequestTable(
            initConnection: { [unowned(unsafe) self] in self.initConnection($0) },
            lookup: { [unowned(unsafe) self] in self.lookup($0, $1, $2) },
            forget: { [unowned(unsafe) self] in self.forget($0, $1, $2) },
            forgetMulti: { [unowned(unsafe) self] in self.forgetMulti($0, $1, $2) },
            getattr: { [unowned(unsafe) self] in self.getattr($0, $1) },
            readlink: { [unowned(unsafe) self] in self.readlink($0, $1) },
            open: { [unowned(unsafe) self] in self.open($0, $1, $2) },
            read: { [unowned(unsafe) self] in self.read($0, $1, $2, $3, $4) },
            release: { [unowned(unsafe) self] in self.release($0, $1, $2) },
            opendir: { [unowned(unsafe) self] in self.opendir($0, $1, $2) },
            readdir: { [unowned(unsafe) self] in self.readdir($0, $1, $2, $3, $4, plus: $5) },
            releasedir: { [unowned(unsafe) self] in self.releasedir($0, $1, $2) },
            statfs: { [unowned(unsafe) self] in self.statfs($0, $1) },
            getxattr: { [unowned(unsafe) self] in self.getxattr($0, $1, $2, $3) },
            listxattr: { [unowned(unsafe) self] in self.listxattr($0, $1, $2) },
            access: { [unowned(unsafe) self] in self.access($0, $1, $2) },
            readOnly: { [unowned(unsafe) self] in self.readOnly($0, $1, $2) })
    }

    // MARK: plumbing

    /// Runs one request: counts it in flight, runs `body`, sends exactly one reply, counts it answered.
    @inline(__always)
    private func serveRequest(_ req: OpaquePointer, _ op: StaticString, _ ino: fuse_ino_t,
                              _ body: () throws(Errno) -> Reply) {
        inflightCount.add(1, ordering: .relaxed)
        if options.debug { logger.debug("\(op) ino=\(ino)") }
        let reply: Reply
        do {
            reply = try body()
        } catch {
            reply = .error(error.rawValue, counted: true)
        }
        send(req, reply, op)
        inflightCount.subtract(1, ordering: .relaxed)
        requestCount.add(1, ordering: .relaxed)
    }

    private func send(_ req: OpaquePointer, _ reply: Reply, _ op: StaticString) {
        var rc: Int32 = 0
        switch reply {
        case .ok:
            rc = fuse_reply_err(req, 0)
        case .none:
            fuse_reply_none(req)
        case .error(let e, let counted):
            if counted {
                errorCount.add(1, ordering: .relaxed)
                if options.debug { logger.debug("\(op) -> \(Errno(e))") }
            }
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

    @inline(__always)
    private func node(_ ino: fuse_ino_t) throws(Errno) -> FS.Node {
        guard let node = table.node(of: ino) else { throw Errno(ESTALE) }
        return node
    }

    private var scratch: WorkerScratch {
        if let raw = pthread_getspecific(workerKey) {
            return Unmanaged<WorkerScratch>.fromOpaque(raw).takeUnretainedValue()
        }
        // A callback on a thread that is not one of our workers (should not happen): give it its own.
        let scratch = WorkerScratch()
        pthread_setspecific(workerKey, Unmanaged.passRetained(scratch).toOpaque())
        return scratch
    }

    private func makeStat(_ ino: fuse_ino_t, _ a: NodeAttributes) -> stat {
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

    private func makeEntry(_ ino: fuse_ino_t, _ a: NodeAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = ino
        e.generation = 0
        e.attr = makeStat(ino, a)
        e.attr_timeout = a.ttl
        e.entry_timeout = a.ttl
        return e
    }

    // MARK: operations

    func initConnection(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        let capable = conn.pointee.capable
        var want = conn.pointee.want
        func enable(_ flag: Int32) { if capable & UInt32(flag) != 0 { want |= UInt32(flag) } }
        func disable(_ flag: Int32) { want &= ~UInt32(flag) }
        enable(FUSE_CAP_ASYNC_READ)
        enable(FUSE_CAP_READDIRPLUS)
        enable(FUSE_CAP_READDIRPLUS_AUTO)
        enable(FUSE_CAP_PARALLEL_DIROPS)
        if filesystem.servesWithoutOpen {
            enable(FUSE_CAP_AUTO_INVAL_DATA)   // cached listings are re-checked against the directory's mtime
        } else {
            disable(FUSE_CAP_AUTO_INVAL_DATA)
        }
        disable(FUSE_CAP_SPLICE_READ)
        disable(FUSE_CAP_SPLICE_WRITE)
        disable(FUSE_CAP_SPLICE_MOVE)
        disable(FUSE_CAP_WRITEBACK_CACHE)
        conn.pointee.want = want
        conn.pointee.max_background = UInt32(max(1, options.maxBackground))
        conn.pointee.congestion_threshold = UInt32(max(1, options.maxBackground * 3 / 4))
        pendingReadAhead.store(true, ordering: .relaxed)
        logger.info("FUSE connection initialised", metadata: [
            "proto": "\(conn.pointee.proto_major).\(conn.pointee.proto_minor)",
            "max_write": "\(conn.pointee.max_write)", "max_readahead": "\(conn.pointee.max_readahead)",
            "max_background": "\(conn.pointee.max_background)",
            "want": "0x\(String(want, radix: 16))", "capable": "0x\(String(capable, radix: 16))",
        ])
    }

    func lookup(_ req: OpaquePointer, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        serveRequest(req, "lookup", parent) { () throws(Errno) -> Reply in
            let parentNode = try node(parent)
            let nameBytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self),
                                                      count: strlen(name)))
            let found: (node: FS.Node, attributes: NodeAttributes)
            do throws(Errno) {
                found = try filesystem.lookup(nameBytes, in: parentNode)
            } catch {
                if error == .noEntry { return .error(ENOENT, counted: false) }
                throw error
            }
            let ino = table.retain(found.node)
            return .entry(makeEntry(ino, found.attributes))
        }
    }

    func forget(_ req: OpaquePointer, _ ino: fuse_ino_t, _ count: UInt64) {
        serveRequest(req, "forget", ino) { () throws(Errno) -> Reply in
            table.forget(ino, count: count)
            return .none
        }
    }

    func forgetMulti(_ req: OpaquePointer, _ count: Int, _ forgets: UnsafeMutablePointer<fuse_forget_data>?) {
        serveRequest(req, "batch_forget", 0) { () throws(Errno) -> Reply in
            if let forgets {
                for item in UnsafeBufferPointer(start: forgets, count: count) {
                    table.forget(item.ino, count: item.nlookup)
                }
            }
            return .none
        }
    }

    func getattr(_ req: OpaquePointer, _ ino: fuse_ino_t) {
        serveRequest(req, "getattr", ino) { () throws(Errno) -> Reply in
            let attributes = try filesystem.attributes(of: try node(ino))
            return .attr(makeStat(ino, attributes), attributes.ttl)
        }
    }

    func readlink(_ req: OpaquePointer, _ ino: fuse_ino_t) {
        serveRequest(req, "readlink", ino) { () throws(Errno) -> Reply in
            let target = try filesystem.readLink(try node(ino))
            return .link(target.map { CChar(bitPattern: $0) } + [0])
        }
    }

    func open(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "open", ino) { () throws(Errno) -> Reply in
            if fi.pointee.flags & O_ACCMODE != O_RDONLY || fi.pointee.flags & O_TRUNC != 0 {
                throw .readOnlyFileSystem
            }
            if filesystem.servesWithoutOpen {
                // The kernel takes ENOSYS as "no open support" for the whole connection.
                return .error(ENOSYS, counted: false)
            }
            let opened = try filesystem.open(try node(ino))
            let box = Unmanaged.passRetained(HandleBox(opened.handle))
            let fh = UInt64(UInt(bitPattern: box.toOpaque()))
            openHandles.insert(fh, isDirectory: false)
            fi.pointee.fh = fh
            fi.pointee.keep_cache = opened.keepCache ? 1 : 0
            fi.pointee.direct_io = opened.directIO ? 1 : 0
            fi.pointee.noflush = 1
            return .open(fi, undo: { [self] in
                if openHandles.remove(fh) { filesystem.release(box.takeRetainedValue().handle) }
            })
        }
    }

    func read(_ req: OpaquePointer, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "read", ino) { () throws(Errno) -> Reply in
            let raw = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))
            let handle = raw.map { Unmanaged<HandleBox<FS.Handle>>.fromOpaque($0).takeUnretainedValue().handle }
            let byNode: FS.Node? = handle == nil && filesystem.servesWithoutOpen ? try node(ino) : nil
            guard handle != nil || byNode != nil else { throw .badFileDescriptor }
            guard size > 0 else { return .data(nil, 0) }
            let buffer = scratch.buffer(atLeast: size)
            var filled = 0
            while filled < size {
                let target = UnsafeMutableRawBufferPointer(start: buffer + filled, count: size - filled)
                let n = if let handle {
                    try filesystem.read(handle, offset: Int(offset) + filled, into: target)
                } else {
                    try filesystem.read(node: byNode!, offset: Int(offset) + filled, into: target)
                }
                if n <= 0 { break }
                filled += min(n, size - filled)
            }
            readCount.add(1, ordering: .relaxed)
            bytesReadCount.add(filled, ordering: .relaxed)
            return .data(UnsafeRawPointer(buffer), filled)
        }
    }

    func release(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "release", ino) { () throws(Errno) -> Reply in
            if let raw = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)), openHandles.remove(fi.pointee.fh) {
                let handle = Unmanaged<HandleBox<FS.Handle>>.fromOpaque(raw).takeRetainedValue().handle
                fi.pointee.fh = 0
                filesystem.release(handle)
            }
            return .ok
        }
    }

    func opendir(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "opendir", ino) { () throws(Errno) -> Reply in
            if filesystem.servesWithoutOpen {
                // The kernel takes ENOSYS as "no opendir support" for the whole connection.
                return .error(ENOSYS, counted: false)
            }
            let listing = try filesystem.readDirectory(try node(ino))
            let box = Unmanaged.passRetained(DirectoryHandle(entries: listing.entries))
            let fh = UInt64(UInt(bitPattern: box.toOpaque()))
            openHandles.insert(fh, isDirectory: true)
            fi.pointee.fh = fh
            if listing.options.cacheEntries {
                fi.pointee.cache_readdir = 1
                fi.pointee.keep_cache = 1
            }
            return .open(fi, undo: { [self] in
                if openHandles.remove(fh) { box.release() }
            })
        }
    }

    func readdir(_ req: OpaquePointer, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t,
                 _ fi: UnsafeMutablePointer<fuse_file_info>, plus: Bool) {
        serveRequest(req, plus ? "readdirplus" : "readdir", ino) { () throws(Errno) -> Reply in
            let dir: DirectoryHandle<FS.Node>
            if let raw = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) {
                dir = Unmanaged<DirectoryHandle<FS.Node>>.fromOpaque(raw).takeUnretainedValue()
            } else if filesystem.servesWithoutOpen {
                dir = try listings.listing(of: ino, fresh: offset == 0) { () throws(Errno) in
                    DirectoryHandle(entries: try filesystem.readDirectory(try node(ino)).entries)
                }
            } else {
                throw .badFileDescriptor
            }
            let scratch = self.scratch
            let buffer = scratch.buffer(atLeast: max(size, 1)).assumingMemoryBound(to: CChar.self)
            var used = 0
            var retained: [UInt64] = []
            var index = max(0, Int(offset))
            let total = dir.entries.count + 2
            while index < total {
                let nextOffset = off_t(index + 1)
                let remaining = size - used
                var added = 0
                if index < 2 {
                    var st = stat()
                    st.st_ino = numericCast(ino)
                    st.st_mode = NodeKind.directory.modeBits
                    let name = index == 0 ? "." : ".."
                    if plus {
                        var e = fuse_entry_param()   // ino 0: the kernel links nothing for . and ..
                        e.attr = st
                        added = fuse_add_direntry_plus(req, buffer + used, remaining, name, &e, nextOffset)
                    } else {
                        added = fuse_add_direntry(req, buffer + used, remaining, name, &st, nextOffset)
                    }
                    if added > remaining { break }
                } else {
                    let entry = dir.entries[index - 2]
                    let stop: Bool = dir.names[index - 2].withUnsafeBufferPointer { name -> Bool in
                        if plus {
                            let needed = fuse_add_direntry_plus(req, nil, 0, name.baseAddress, nil, 0)
                            if needed > remaining { return true }
                            let childIno = table.retain(entry.node)
                            retained.append(childIno)
                            var e = makeEntry(childIno, entry.attributes)
                            added = fuse_add_direntry_plus(req, buffer + used, remaining, name.baseAddress, &e, nextOffset)
                        } else {
                            let childIno = table.existingIno(of: entry.node) ?? 0xffff_ffff
                            var st = makeStat(childIno, entry.attributes)
                            added = fuse_add_direntry(req, buffer + used, remaining, name.baseAddress, &st, nextOffset)
                            if added > remaining { return true }
                        }
                        return false
                    }
                    if stop { break }
                }
                used += added
                index += 1
            }
            if plus { return .directoryPlus(UnsafeRawPointer(buffer), used, retained: retained) }
            return .data(UnsafeRawPointer(buffer), used)
        }
    }

    func releasedir(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "releasedir", ino) { () throws(Errno) -> Reply in
            if let raw = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)), openHandles.remove(fi.pointee.fh) {
                Unmanaged<DirectoryHandle<FS.Node>>.fromOpaque(raw).release()
                fi.pointee.fh = 0
            }
            return .ok
        }
    }

    func statfs(_ req: OpaquePointer, _ ino: fuse_ino_t) {
        serveRequest(req, "statfs", ino) { () throws(Errno) -> Reply in
            let stats = filesystem.statistics()
            var sv = statvfs()
            sv.f_bsize = 4096
            sv.f_frsize = 4096
            sv.f_blocks = numericCast((stats.totalBytes + 4095) / 4096)
            sv.f_bfree = 0
            sv.f_bavail = 0
            sv.f_files = numericCast(stats.files)
            sv.f_ffree = 0
            sv.f_favail = 0
            sv.f_namemax = 255
            sv.f_flag = UInt(ST_RDONLY)
            return .statfs(sv)
        }
    }

    /// The size-0 probing protocol of getxattr/listxattr: size 0 -> the length; too small -> ERANGE.
    private func xattrReply(_ value: [UInt8], size: Int) -> Reply {
        if size == 0 { return .xattrSize(value.count) }
        if size < value.count { return .error(ERANGE, counted: false) }
        let buffer = scratch.buffer(atLeast: max(value.count, 1))
        value.withUnsafeBytes { raw in
            if let base = raw.baseAddress { buffer.copyMemory(from: base, byteCount: raw.count) }
        }
        return .data(UnsafeRawPointer(buffer), value.count)
    }

    func getxattr(_ req: OpaquePointer, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ size: Int) {
        serveRequest(req, "getxattr", ino) { () throws(Errno) -> Reply in
            let wanted = String(cString: name)
            let attributes = try filesystem.extendedAttributes(of: try node(ino))
            guard let match = attributes.first(where: { $0.name == wanted }) else {
                return .error(ENODATA, counted: false)
            }
            return xattrReply(match.value, size: size)
        }
    }

    func listxattr(_ req: OpaquePointer, _ ino: fuse_ino_t, _ size: Int) {
        serveRequest(req, "listxattr", ino) { () throws(Errno) -> Reply in
            let attributes = try filesystem.extendedAttributes(of: try node(ino))
            var names: [UInt8] = []
            for attribute in attributes {
                names.append(contentsOf: attribute.name.utf8)
                names.append(0)
            }
            return xattrReply(names, size: size)
        }
    }

    func access(_ req: OpaquePointer, _ ino: fuse_ino_t, _ mask: Int32) {
        serveRequest(req, "access", ino) { () throws(Errno) -> Reply in
            _ = try node(ino)
            if mask & W_OK != 0 { throw .readOnlyFileSystem }
            return .ok
        }
    }

    func readOnly(_ req: OpaquePointer, _ op: StaticString, _ ino: fuse_ino_t) {
        serveRequest(req, op, ino) { () throws(Errno) -> Reply in
            throw .readOnlyFileSystem
        }
    }
}

extension FuseMount {
    /// Releases every handle the kernel never sent RELEASE for (connection ended with files open).
    /// Runs after all workers joined, so nothing else touches the handles.
    func releaseOrphanedHandles() {
        let orphans = openHandles.drain()
        for (fh, isDirectory) in orphans {
            guard let raw = UnsafeRawPointer(bitPattern: UInt(fh)) else { continue }
            if isDirectory {
                Unmanaged<DirectoryHandle<FS.Node>>.fromOpaque(raw).release()
            } else {
                filesystem.release(Unmanaged<HandleBox<FS.Handle>>.fromOpaque(raw).takeRetainedValue().handle)
            }
        }
        if !orphans.isEmpty { logger.debug("released \(orphans.count) handles the kernel never released") }
    }
}

/// Directory listings of a server that runs without OPENDIR: a listing is taken at offset 0 and reused
/// for the later offsets of the same pass, so offsets stay stable. Bounded (64 listings per shard, 16
/// shards; a full shard is emptied). Thread-safe: sharded by inode, one lock per shard, held only to
/// look up or insert; a continuation that raced another one to make the missing listing takes the one
/// that was stored first, so two continuations never walk different snapshots.
final class ListingTable<Node: Hashable & Sendable>: Sendable {
    private final class Shard: Sendable {
        let table = Mutex<[fuse_ino_t: DirectoryHandle<Node>]>([:])
    }
    private let shards: [Shard] = (0..<16).map { _ in Shard() }

    func listing(of ino: fuse_ino_t, fresh: Bool,
                 make: () throws(Errno) -> DirectoryHandle<Node>) throws(Errno) -> DirectoryHandle<Node> {
        let shard = shards[Int(truncatingIfNeeded: (ino ^ ino >> 6) & 15)]
        if !fresh, let known = shard.table.withLock({ $0[ino] }) { return known }
        let made = try make()
        return shard.table.withLock { t -> DirectoryHandle<Node> in
            if !fresh, let first = t[ino] { return first }
            if t.count >= 64 { t.removeAll(keepingCapacity: true) }
            t[ino] = made
            return made
        }
    }
}
