import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Logging

/// One function per FUSE operation that is not about file content or listings (those are in
/// FileOperations.swift and DirectoryOperations.swift). Each runs inside `serveRequest`, which sends
/// exactly one reply; each may run on any worker thread, concurrently with every other operation, also
/// on the same inode.
extension FuseMount {
    /// INIT, answered by libfuse once this returns: what we want of the kernel. Runs once, before any
    /// other request; the bdi read-ahead is raised by the first worker request after it (pendingReadAhead).
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

    /// LOOKUP. Invariant: every successful reply hands the kernel one more lookup count of the child's
    /// inode; the count is taken (table.retain, find-or-create in one step) before the reply and given
    /// back by `send` when the kernel refuses the reply (interrupted caller), so counts never leak.
    func lookup(_ req: OpaquePointer, _ parent: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        serveRequest(req, "lookup", parent) { () throws(Errno) -> Reply in
            let parentNode = try node(parent)
            let nameBytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self),
                                                      count: strlen(name)))
            let found = try filesystem.lookup(nameBytes, in: parentNode)
            let ino = table.retain(found.node)
            return .entry(makeEntry(ino, found.attributes))
        }
    }

    /// FORGET: the kernel drops `count` lookups of `ino`. Gets no reply (fuse_reply_none).
    func forget(_ req: OpaquePointer, _ ino: fuse_ino_t, _ count: UInt64) {
        serveRequest(req, "forget", ino) { () throws(Errno) -> Reply in
            table.forget(ino, count: count)
            return .none
        }
    }

    /// BATCH_FORGET: FORGET for many inodes at once. Gets no reply.
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

    /// GETATTR. Relies on: the kernel only names inodes it holds a lookup count of (else ESTALE).
    func getattr(_ req: OpaquePointer, _ ino: fuse_ino_t) {
        serveRequest(req, "getattr", ino) { () throws(Errno) -> Reply in
            let attributes = try filesystem.attributes(of: try node(ino))
            return .attr(makeStat(ino, attributes), attributes.ttl)
        }
    }

    /// READLINK: the target, NUL-terminated for fuse_reply_readlink.
    func readlink(_ req: OpaquePointer, _ ino: fuse_ino_t) {
        serveRequest(req, "readlink", ino) { () throws(Errno) -> Reply in
            let target = try filesystem.readLink(try node(ino))
            return .link(target.map { CChar(bitPattern: $0) } + [0])
        }
    }

    /// STATFS: a read-only filesystem with no free space; names up to 255 bytes (NAME_MAX).
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

    /// GETXATTR. Only the user namespace is served (the protocol's contract): a name outside it is
    /// answered EOPNOTSUPP, as the kernel answers for a namespace a filesystem has no handler for. Relied
    /// on by `ls -l`: coreutils remembers per device that `security.selinux` and `system.posix_acl_access`
    /// are unsupported and stops asking, where ENODATA costs both round trips again for every file. An
    /// absent user attribute is ENODATA. Both are answers, not errors.
    func getxattr(_ req: OpaquePointer, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ size: Int) {
        serveRequest(req, "getxattr", ino) { () throws(Errno) -> Reply in
            let target = try node(ino)
            guard strncmp(name, "user.", 5) == 0 else { return .answer(EOPNOTSUPP) }
            let wanted = String(cString: name)
            let attributes = try filesystem.extendedAttributes(of: target)
            guard let match = attributes.first(where: { $0.name == wanted }) else { return .answer(ENODATA) }
            return xattrReply(match.value, size: size)
        }
    }

    /// LISTXATTR: the names, each NUL-terminated.
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

    /// ACCESS (only sent without default_permissions): any write permission is EROFS.
    func access(_ req: OpaquePointer, _ ino: fuse_ino_t, _ mask: Int32) {
        serveRequest(req, "access", ino) { () throws(Errno) -> Reply in
            _ = try node(ino)
            if mask & W_OK != 0 { throw .readOnlyFileSystem }
            return .ok
        }
    }

    /// Every operation that would change the filesystem (setattr, mknod, mkdir, unlink, rmdir, symlink,
    /// rename, link, write, create, setxattr, removexattr, fallocate, copy_file_range): EROFS.
    func readOnly(_ req: OpaquePointer, _ op: StaticString, _ ino: fuse_ino_t) {
        serveRequest(req, op, ino) { () throws(Errno) -> Reply in
            throw .readOnlyFileSystem
        }
    }
}
