import Testing
@Test func placeholderFuseServerTests() { #expect(Bool(true)) }
