import Foundation
/// Shared helpers for the test targets.
public enum TestSupportPlaceholder {}
