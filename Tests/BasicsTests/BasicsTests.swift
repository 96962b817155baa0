import Basics
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct BasicsTests {
    /// A scratch folder removed at the end.
    final class Scratch {
        let path = NSTemporaryDirectory() + "/basics-" + UUID().uuidString
        init() { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    @Test func fileDescriptorClosesExactlyOnceWhenItsValueEnds() throws {
        let s = Scratch()
        var raw: Int32 = -1
        do {
            let fd = try FileDescriptor.open(s.path + "/f", O_RDWR | O_CREAT)
            raw = fd.rawValue
            try fd.write(Array("hello".utf8), at: 0)
            #expect(try fd.read(count: 100, at: 1) == Array("ello".utf8))
            #expect(fcntl(raw, F_GETFD) >= 0)
            #expect(fcntl(raw, F_GETFD) & FD_CLOEXEC != 0)
        }
        #expect(fcntl(raw, F_GETFD) == -1 && errno == EBADF)
        let fd = try FileDescriptor.open(s.path + "/f", O_RDONLY)
        let again = fd.rawValue
        fd.close()
        #expect(fcntl(again, F_GETFD) == -1 && errno == EBADF)
    }

    @Test func failuresAreErrnoValues() throws {
        let s = Scratch()
        #expect(throws: Errno.noEntry) { _ = try FileDescriptor.open(s.path + "/missing", O_RDONLY) }
        #expect(throws: Errno.noEntry) { _ = try FileSystem.entries(of: s.path + "/missing") }
        #expect(throws: Errno.exists) { _ = try FileDescriptor.open(s.path, O_RDWR | O_CREAT | O_EXCL) }
        #expect(Errno.noEntry.description == "No such file or directory (errno 2)")
        #expect(Errno.noSpace.isNoSpace && Errno.readOnlyFileSystem.isWriteRefused && !Errno.io.isWriteRefused)
    }

    @Test func pathCallsDoWhatTheirNamesSay() throws {
        let s = Scratch()
        try FileSystem.makeDirectories(s.path + "/a/b/c")
        try FileSystem.makeDirectory(s.path + "/a")   // exists: fine
        let fd = try FileDescriptor.open(s.path + "/a/b/c/x", O_WRONLY | O_CREAT)
        try fd.write([UInt8](repeating: 7, count: 10_000), at: 0)
        try FileSystem.link(s.path + "/a/b/c/x", to: s.path + "/a/y")
        #expect(throws: Errno.exists) { try FileSystem.link(s.path + "/a/b/c/x", to: s.path + "/a/y") }
        try FileSystem.rename(s.path + "/a/y", to: s.path + "/a/z")
        #expect(Set(FileSystem.list(s.path + "/a")) == ["b", "z"])
        #expect(try FileSystem.readFile(s.path + "/a/z") == [UInt8](repeating: 7, count: 10_000))
        #expect(FileSystem.diskUsage(s.path + "/a") >= 10_000)
        #expect(try FileSystem.readFile("/proc/self/mountinfo").count > 0)
        #expect(FileSystem.removeTree(s.path + "/a"))
        #expect(!FileSystem.exists(s.path + "/a"))
    }

    @Test func byteCountsReadTheSameEverywhere() {
        #expect(ByteCount.format(512) == "512 B")
        #expect(ByteCount.format(1536) == "1.5 KiB")
        #expect(ByteCount.format(3 << 20) == "3.0 MiB")
        #expect(ByteCount.format(1536, style: .short) == "1.5K")
        #expect(ByteCount.format(100, style: .short) == "100B")
        #expect(ByteCount.format(5 << 30, style: .short) == "5.0G")
    }

    @Test func objectIDsParseAndOrderLikeTheirHex() throws {
        let a = try #require(ObjectID(hex: "00000000000000000000000000000000000000ff"))
        let b = try #require(ObjectID(hex: "0100000000000000000000000000000000000000"))
        #expect(a < b && a.hex < b.hex)
        #expect(ObjectID(hex: "ABCDEF0123456789abcdef0123456789abcdef01")?.hex == "abcdef0123456789abcdef0123456789abcdef01")
        #expect(ObjectID(hex: "zz") == nil && ObjectID(hex: String(repeating: "g", count: 40)) == nil)
        #expect(b.firstByte == 1 && ObjectID.zero.isZero)
    }

    @Test func monotonicTimeOnlyMovesForward() {
        let t0 = MonotonicTime.now
        usleep(20_000)
        let t1 = MonotonicTime.now
        #expect(t1 > t0 && t1 - t0 >= .milliseconds(20))
        #expect(t0 - t1 == .zero)
        #expect((t0 + .seconds(1)).nanoseconds == t0.nanoseconds + 1_000_000_000)
    }
}
