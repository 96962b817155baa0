#if canImport(Glibc)
import Glibc
#endif

/// Splits one libFuzzer input into the parts a target needs: `part()` takes a part whose length is the
/// next two bytes (little-endian, reduced to what is left), `rest()` takes everything left. Reading past
/// the end gives empty parts, never a trap. A value; one per input.
public struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    private var at = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    }

    public var remaining: Int { bytes.count - at }

    /// The next byte, 0 when none is left.
    public mutating func byte() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }

    /// A part of the length given by the next two bytes (modulo what is left, plus one).
    public mutating func part() -> [UInt8] {
        let want = Int(byte()) | Int(byte()) << 8
        let n = remaining == 0 ? 0 : want % (remaining + 1)
        defer { at += n }
        return Array(bytes[at..<(at + n)])
    }

    /// Everything not taken yet.
    public mutating func rest() -> [UInt8] {
        defer { at = bytes.count }
        return Array(bytes[at...])
    }
}

/// A file holding `bytes` on tmpfs (in `ScratchDirectory`), open for reading, for parsers that read
/// from a descriptor or a path. Closed and removed exactly once.
public struct MemoryFile: ~Copyable {
    public let fd: Int32
    public let path: String

    public init(_ bytes: [UInt8]) {
        path = ScratchDirectory.path + "/input"
        ScratchDirectory.write("input", bytes)
        fd = open(path, O_RDONLY | O_CLOEXEC)
        precondition(fd >= 0, "cannot open \(path): errno \(errno)")
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// A directory of this process on tmpfs (`$GITFS_FUZZ_SCRATCH`, which tools/fuzz makes and removes
/// also after a crash, else `/dev/shm/gitfs-fuzz-PID`), for parsers that open files by name; removed at
/// a normal exit. Files written into it replace earlier ones of the same name.
public enum ScratchDirectory {
    public static let path: String = {
        let p = getenv("GITFS_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/dev/shm/gitfs-fuzz-\(getpid())"
        mkdir(p, 0o700)
        atexit { ScratchDirectory.removeAll() }
        return p
    }()

    /// Writes `bytes` to `name` in the directory (truncating); traps when that fails (a harness fault).
    public static func write(_ name: String, _ bytes: [UInt8]) {
        let fd = open(path + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot write \(path)/\(name): errno \(errno)")
        defer { close(fd) }
        var done = 0
        bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                precondition(n > 0, "write failed: errno \(errno)")
                done += n
            }
        }
    }

    static func removeAll() {
        guard let d = opendir(path) else { return }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(d)
        rmdir(path)
    }
}
