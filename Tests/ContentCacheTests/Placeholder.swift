import Testing
@Test func placeholderContentCacheTests() { #expect(Bool(true)) }
