// libFuzzer target: git's delta format as gitfs's pack reader applies it (Delta.resultSize, Delta.apply).
// Input: a part (the base), then the delta. The result is checked against an independent reading of
// the delta's instructions, so a wrong copy is found as well as an out-of-bounds one.
import FuzzSupport
@testable import GitStore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDelta(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let base = input.part()
    let delta = input.rest()
    base.withUnsafeBytes { b in
        delta.withUnsafeBytes { d in
            guard let n = Delta.resultSize(d, baseSize: b.count), n <= 1 << 24 else { return }
            var out = [UInt8](repeating: 0, count: n)
            let ok = out.withUnsafeMutableBytes { Delta.apply(d, to: b, into: $0) }
            let expected = reference(delta, base)
            precondition(ok == (expected != nil), "Delta.apply says \(ok), the reference \(expected != nil)")
            if ok { precondition(out == expected!, "Delta.apply built other bytes than the reference") }
        }
    }
    return 0
}

/// A second, deliberately plain reading of the format (git's patch-delta.c rules): nil when malformed.
private func reference(_ d: [UInt8], _ base: [UInt8]) -> [UInt8]? {
    var i = 0
    func varint() -> Int? {
        var v = 0, s = 0
        while i < d.count, s <= 56 {
            let c = d[i]; i += 1
            v |= Int(c & 0x7f) << s; s += 7
            if c & 0x80 == 0 { return v }
        }
        return nil
    }
    guard varint() == base.count, let size = varint() else { return nil }
    var out: [UInt8] = []
    while i < d.count {
        let op = d[i]; i += 1
        if op == 0 { return nil }
        if op & 0x80 == 0 {
            guard i + Int(op) <= d.count else { return nil }
            out += d[i..<(i + Int(op))]; i += Int(op)
            continue
        }
        var off = 0, len = 0
        for bit in 0..<7 where op & (1 << bit) != 0 {
            guard i < d.count else { return nil }
            if bit < 4 { off |= Int(d[i]) << (8 * bit) } else { len |= Int(d[i]) << (8 * (bit - 4)) }
            i += 1
        }
        if len == 0 { len = 0x10000 }
        guard off + len <= base.count, out.count + len <= size else { return nil }
        out += base[off..<(off + len)]
    }
    return out.count == size ? out : nil
}
