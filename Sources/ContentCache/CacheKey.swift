/// A cache key: the 20-byte git object id of a blob, stored inline (no allocation).
/// A value type; safe to share between threads.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    @usableFromInline let a: UInt64
    @usableFromInline let b: UInt64
    @usableFromInline let c: UInt32

    /// The key of exactly 20 raw bytes (a SHA-1 object id). Traps on any other length.
    public init(raw: UnsafeRawBufferPointer) {
        precondition(raw.count == 20, "CacheKey needs exactly 20 bytes, got \(raw.count)")
        var t = (UInt64(0), UInt64(0), UInt32(0))
        withUnsafeMutableBytes(of: &t) { dst in
            dst.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: 8)
            (dst.baseAddress! + 8).copyMemory(from: raw.baseAddress! + 8, byteCount: 8)
            (dst.baseAddress! + 16).copyMemory(from: raw.baseAddress! + 16, byteCount: 4)
        }
        a = t.0; b = t.1; c = t.2
    }

    /// Parses 40 hexadecimal digits (either case); nil for anything else.
    public init?(hex: String) {
        let u = Array(hex.utf8)
        guard u.count == 40 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 20)
        for i in 0..<20 {
            guard let h = CacheKey.nibble(u[2 * i]), let l = CacheKey.nibble(u[2 * i + 1]) else { return nil }
            bytes[i] = h << 4 | l
        }
        self = bytes.withUnsafeBytes { CacheKey(raw: $0) }
    }

    /// Calls `body` with the 20 raw bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var t = (a, b, c)
        return try Swift.withUnsafeBytes(of: &t) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
    }

    /// The 20 raw bytes as an array.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// 40 lowercase hexadecimal digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        return withUnsafeBytes { raw in
            String(unsafeUninitializedCapacity: 40) { out in
                for (i, byte) in raw.enumerated() {
                    out[2 * i] = digits[Int(byte >> 4)]
                    out[2 * i + 1] = digits[Int(byte & 15)]
                }
                return 40
            }
        }
    }

    public var description: String { hex }

    /// The first byte, used to pick an index shard.
    var firstByte: UInt8 { UInt8(truncatingIfNeeded: a) }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
