import Basics
#if canImport(Glibc)
import Glibc
#endif
import CFuse

/// The FUSE operations on listings: OPENDIR, READDIR(PLUS), RELEASEDIR. Offsets are indexes + 1 into
/// one listing taken at opendir (or, in no-open mode, at offset 0 and kept in `listings`), so a listing
/// read in several requests never skips or repeats an entry; indexes 0 and 1 are `.` and `..`.
extension FuseMount {
    /// OPENDIR: takes the listing once; its handle lives until RELEASEDIR (or the end of serve()).
    func opendir(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "opendir", ino) { () throws(Errno) -> Reply in
            if filesystem.servesWithoutOpen {
                // The kernel takes ENOSYS as "no opendir support" for the whole connection.
                return .answer(ENOSYS)
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

    /// READDIR and READDIRPLUS. Invariant (plus): every entry put into the buffer carries +1 lookup
    /// count on its inode (the kernel takes it as a LOOKUP); the counts of a refused reply are undone in
    /// `send`, and an entry that does not fit is not retained.
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
                    let stop: Bool = dir.withName(index - 2) { name -> Bool in
                        if plus, entry.withoutAttributes {
                            // Node id 0: the kernel lists the name and type and links nothing (no lookup
                            // count taken); a LOOKUP brings the attributes when someone asks.
                            var e = fuse_entry_param()
                            e.attr = makeStat(table.existingIno(of: entry.node) ?? 0xffff_ffff, entry.attributes)
                            added = fuse_add_direntry_plus(req, buffer + used, remaining, name, &e, nextOffset)
                            if added > remaining { return true }
                        } else if plus {
                            let needed = fuse_add_direntry_plus(req, nil, 0, name, nil, 0)
                            if needed > remaining { return true }
                            let childIno = table.retain(entry.node)
                            retained.append(childIno)
                            var e = makeEntry(childIno, entry.attributes)
                            added = fuse_add_direntry_plus(req, buffer + used, remaining, name, &e, nextOffset)
                        } else {
                            let childIno = table.existingIno(of: entry.node) ?? 0xffff_ffff
                            var st = makeStat(childIno, entry.attributes)
                            added = fuse_add_direntry(req, buffer + used, remaining, name, &st, nextOffset)
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

    /// RELEASEDIR: the kernel's last use of a listing from OPENDIR.
    func releasedir(_ req: OpaquePointer, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        serveRequest(req, "releasedir", ino) { () throws(Errno) -> Reply in
            if let raw = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)), openHandles.remove(fi.pointee.fh) {
                Unmanaged<DirectoryHandle<FS.Node>>.fromOpaque(raw).release()
                fi.pointee.fh = 0
            }
            return .ok
        }
    }
}
