/// A 20-byte git object id (SHA-1): the name of a git object and the key of the content cache.
/// Stored inline (two `UInt64` and one `UInt32`, no heap) because it is a hot dictionary key.
/// Ordering is the byte order, the same as the order of the hex strings. A plain value: safe to share
/// between threads.
public struct ObjectID: Hashable, Sendable, Comparable, CustomStringConvertible {
    // The 20 raw bytes in memory order: a = bytes 0..<8, b = 8..<16, c = 16..<20.
    private var a: UInt64
    private var b: UInt64
    private var c: UInt32

    /// The all-zero id (git's "no object", used for created or deleted refs).
    public static let zero = ObjectID(a: 0, b: 0, c: 0)

    private init(a: UInt64, b: UInt64, c: UInt32) { self.a = a; self.b = b; self.c = c }

    /// Exactly 20 raw bytes (precondition).
    public init(raw: UnsafeRawBufferPointer) {
        precondition(raw.count == 20, "ObjectID needs exactly 20 bytes, got \(raw.count)")
        a = raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        b = raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        c = raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
    }

    /// Exactly 40 hexadecimal characters (either case); nil otherwise.
    public init?(hex: String) {
        var text = hex
        guard let id = text.withUTF8({ ObjectID(hexUTF8: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = id
    }

    /// Exactly 40 bytes of ASCII hexadecimal digits (either case), e.g. a slice of a commit header;
    /// nil otherwise.
    public init?(hexUTF8 src: UnsafeRawBufferPointer) {
        guard src.count == 40 else { return nil }
        var t = (UInt64(0), UInt64(0), UInt32(0))
        let ok = withUnsafeMutableBytes(of: &t) { dst -> Bool in
            for i in 0..<20 {
                guard let hi = ObjectID.nibble(src[2 * i]), let lo = ObjectID.nibble(src[2 * i + 1]) else { return false }
                dst[i] = hi << 4 | lo
            }
            return true
        }
        guard ok else { return nil }
        (a, b, c) = t
    }

    private static func nibble(_ ch: UInt8) -> UInt8? {
        switch ch {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return ch &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return ch &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return ch &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }

    /// Calls `body` with the 20 raw bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var t = (a, b, c)
        return try Swift.withUnsafeBytes(of: &t) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
    }

    /// The 20 raw bytes as an array.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The first raw byte (picks an index shard).
    public var firstByte: UInt8 { UInt8(truncatingIfNeeded: a) }

    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// 40 lowercase hexadecimal digits.
    public var hex: String {
        withUnsafeBytes { raw in
            String(unsafeUninitializedCapacity: 40) { buf in
                for i in 0..<20 {
                    buf[2 * i] = ObjectID.digits[Int(raw[i] >> 4)]
                    buf[2 * i + 1] = ObjectID.digits[Int(raw[i] & 15)]
                }
                return 40
            }
        }
    }

    public var description: String { hex }

    /// True for the all-zero id.
    public var isZero: Bool { a == 0 && b == 0 && c == 0 }

    public static func < (l: ObjectID, r: ObjectID) -> Bool {
        let (la, ra) = (UInt64(bigEndian: l.a), UInt64(bigEndian: r.a))
        if la != ra { return la < ra }
        let (lb, rb) = (UInt64(bigEndian: l.b), UInt64(bigEndian: r.b))
        if lb != rb { return lb < rb }
        return UInt32(bigEndian: l.c) < UInt32(bigEndian: r.c)
    }
}
