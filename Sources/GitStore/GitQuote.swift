/// Git's C-style quoting of path names (core.quotePath on): names with control characters, '"', '\'
/// or bytes >= 0x80 are printed in double quotes with escapes (`"\303\251t\n"`). Stateless; thread-safe.
public enum GitQuote {
    /// `name` as git prints it: unchanged when no byte needs quoting, else in double quotes with escapes.
    public static func cStyle(_ name: [UInt8]) -> [UInt8] {
        func needs(_ c: UInt8) -> Bool { c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c >= 0x7f }
        guard name.contains(where: needs) else { return name }
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for c in name {
            guard needs(c) else { out.append(c); continue }
            out.append(UInt8(ascii: "\\"))
            switch c {
            case 0x07: out.append(UInt8(ascii: "a"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x0a: out.append(UInt8(ascii: "n"))
            case 0x0b: out.append(UInt8(ascii: "v"))
            case 0x0c: out.append(UInt8(ascii: "f"))
            case 0x0d: out.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(c)
            default:
                out.append(UInt8(ascii: "0") + (c >> 6))
                out.append(UInt8(ascii: "0") + ((c >> 3) & 7))
                out.append(UInt8(ascii: "0") + (c & 7))
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}

extension TreeEntry {
    /// The name as git prints it in quoted paths (`GitQuote.cStyle`), for messages and logs.
    public var quotedName: String { String(decoding: GitQuote.cStyle(name), as: UTF8.self) }
}
