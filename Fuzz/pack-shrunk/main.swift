// libFuzzer target: as `pack`, but the pack file is truncated after it was opened and before it is read
// (issue 17: a pack shrunk under a running mount must give failed reads, never a signal).
import FuzzPackSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPackShrunkTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzPack(data, size, shrink: true)
    return 0
}
