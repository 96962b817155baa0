import Testing
@Test func placeholderGitStoreTests() { #expect(Bool(true)) }
