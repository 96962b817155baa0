import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse

/// The FUSE operations on file content: OPEN, READ, RELEASE. In no-open mode (`servesWithoutOpen`)
/// the kernel sends no OPEN or RELEASE after the first OPEN's ENOSYS, and every READ names its inode
/// with fi->fh == 0. Otherwise fi->fh is a retained HandleBox registered in `openHandles` from the open
/// reply until RELEASE (or until serve() ends and releases what the kernel never did).
extension FuseMount {
    /// OPEN. Invariant: a handle is released exactly once: by RELEASE, by the undo of a refused open
    /// reply, or by releaseOrphanedHandles; `openHandles.remove` decides which one owns it.
    func open(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "open", ino) { () throws(Errno) -> Reply in
            if fi.pointee.flags & O_ACCMODE != O_RDONLY || fi.pointee.flags & O_TRUNC != 0 {
                throw .readOnlyFileSystem
            }
            if filesystem.servesWithoutOpen {
                // The kernel takes ENOSYS as "no open support" for the whole connection.
                return .answer(ENOSYS)
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

    /// READ: fills the request from the handle (or the node) until it is full or the file ends. The
    /// reply points into this worker's scratch buffer, which stays untouched until the reply is sent.
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

    /// RELEASE: the kernel's last use of a handle from OPEN.
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
}
