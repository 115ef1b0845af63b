// The engine's one error type for bad input (files, configurations, shapes, plans): a message that
// names the problem, shown to the user as it is. Shape bugs in our own code are preconditions instead.
import Foundation

/// Bad input, with a message naming the file, key or value at fault.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
