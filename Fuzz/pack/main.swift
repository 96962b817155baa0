// libFuzzer target: a pack and its index as gitfs's own pack reader reads them (see PackHarness.swift).
import FuzzPackSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPackTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzPack(data, size, shrink: false)
    return 0
}
