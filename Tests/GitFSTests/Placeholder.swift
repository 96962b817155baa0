import Testing
@Test func placeholderGitFSTests() { #expect(Bool(true)) }
