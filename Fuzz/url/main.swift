// libFuzzer target: what gitfs derives from a clone URL itself (MirrorStore): the default mirror name
// (`gitfs clone URL` without NAME), which must always be a name `validateName` accepts, and name
// validation itself. (libgit2 parses the URL for the transport; that is not ours.) Input: the URL.
import FuzzSupport
@testable import GitStore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzURL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: size > 0 ? data : nil, count: size), as: UTF8.self)
    let name = MirrorStore.defaultName(forURL: text)
    do { try MirrorStore.validateName(name) } catch {
        preconditionFailure("default name '\(name)' of '\(text)' is refused: \(error)")
    }
    // A name that validates is one path component inside repos/: no '/', not '.' or '..'.
    if (try? MirrorStore.validateName(text)) != nil {
        precondition(!text.contains("/") && text != "." && text != "..", "'\(text)' validated as a name")
    }
    return 0
}
