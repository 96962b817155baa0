// libFuzzer target: the option strings of the mount.fuse3 form (`gitfs HOME MOUNTPOINT -o OPTIONS`, as
// an /etc/fstab line gives them): MountHelperForm.rewrite, in both spellings (`-o X` and `-oX`).
// Input: OPTIONS. A rewrite is `mount MOUNTPOINT --home HOME` and then only gitfs's own flags, each
// value flag followed by a non-empty value; anything else is a usage error, never a trap.
import FuzzSupport
@testable import GitfsCommands

private let valueFlags = Set(MountHelperForm.flags.values.filter(\.takesValue).map(\.flag))
private let plainFlags = Set(MountHelperForm.flags.values.filter { !$0.takesValue }.map(\.flag))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMountOptions(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let options = String(decoding: UnsafeBufferPointer(start: size > 0 ? data : nil, count: size), as: UTF8.self)
    for form in [["-o", options], ["-o" + options]] {
        guard let out = try? MountHelperForm.rewrite(["/srv/gitfs", "/mnt/git"] + form, subcommands: ["mount"]) else { continue }
        precondition(Array(out.prefix(4)) == ["mount", "/mnt/git", "--home", "/srv/gitfs"], "rewrite lost its head: \(out)")
        var rest = out.dropFirst(4)
        while let flag = rest.popFirst() {
            if valueFlags.contains(flag) {
                guard let value = rest.popFirst(), !value.isEmpty else { preconditionFailure("\(flag) without a value: \(out)") }
            } else {
                precondition(plainFlags.contains(flag), "rewrite made an argument no option gives: \(flag) in \(out)")
            }
        }
    }
    return 0
}
