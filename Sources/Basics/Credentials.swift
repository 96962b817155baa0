/// Masking credentials in text that may reach a log, an error or the terminal. Stateless: thread-safe.
public enum Credentials {
    /// Query parameters whose values are secrets.
    static let secretParameters = ["password", "secret", "token", "signature", "x-amz-signature",
                                   "x-amz-credential", "x-amz-security-token", "access_key", "secret_key", "key"]

    /// Replaces the password of every `scheme://user:password@` with `***` and the values of secret
    /// query parameters (`token=`, `secret=`, `X-Amz-Signature=`...) with `***`.
    public static func redacted(_ text: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let schemeEnd = endOfSchemeSeparator(in: rest) {
            out += rest[..<schemeEnd]
            rest = rest[schemeEnd...]
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == " " || $0 == "?" || $0 == "#" } ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@") {
                let userinfo = authority[..<at]
                if let colon = userinfo.firstIndex(of: ":") {
                    out += userinfo[..<colon] + ":***"
                } else {
                    out += userinfo
                }
                out += authority[at...]
            } else {
                out += authority
            }
            rest = rest[authorityEnd...]
        }
        out += rest
        return maskParameters(out)
    }

    /// The index just past the first `://` in `text`, or nil.
    private static func endOfSchemeSeparator(in text: Substring) -> Substring.Index? {
        var i = text.startIndex
        while i < text.endIndex {
            if text[i...].hasPrefix("://") { return text.index(i, offsetBy: 3) }
            i = text.index(after: i)
        }
        return nil
    }

    private static func maskParameters(_ text: String) -> String {
        var result = ""
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            result.append(c)
            i = text.index(after: i)
            guard c == "?" || c == "&" else { continue }
            let nameEnd = text[i...].firstIndex { $0 == "=" || $0 == "&" || $0 == " " } ?? text.endIndex
            guard nameEnd < text.endIndex, text[nameEnd] == "=",
                  secretParameters.contains(text[i..<nameEnd].lowercased()) else { continue }
            result += text[i...nameEnd] + "***"
            i = text[text.index(after: nameEnd)...].firstIndex { $0 == "&" || $0 == " " || $0 == "#" } ?? text.endIndex
        }
        return result
    }
}
