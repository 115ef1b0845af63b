// The engine's one error type for bad input (files, configurations, shapes, plans, arguments): a
// message that names the problem, shown to the user as it is. Shape bugs in our own code are
// preconditions instead.
import Foundation

/// Bad input, with a message naming the file, key or value at fault.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// The caller's argument is at fault (a step count, a size, a scale, a name it passed), not a
    /// file's contents: the command line reports it as a usage error (exit code 64, as for an
    /// option's value). Prefixing a file's name (`ModelError("\(path): \(e.message)")`) makes it the
    /// file's fault again, as where a plan file gave the step count.
    public let isArgument: Bool
    public init(_ message: String) { self.message = message; isArgument = false }
    public init(argument message: String) { self.message = message; isArgument = true }
    public var description: String { message }
}

/// The first value of `values` that is not finite, with the image it lies in: `values` are rows of
/// `perImage` values, the first being image `firstImage` (nil when every value is finite). The one
/// non-finite check of samples, latents, images and features; each caller says what diverged.
public func firstNonFinite(_ values: [Float], perImage: Int, firstImage: Int = 0) -> (image: Int, value: Float)? {
    guard let bad = values.firstIndex(where: { !$0.isFinite }) else { return nil }
    return (firstImage + bad / max(1, perImage), values[bad])
}
