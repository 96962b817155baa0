import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse

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
}
