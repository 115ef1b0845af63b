// Deterministic Gaussian noise and the two named noise streams of a generation: the same seed gives
// the same numbers on every run, device and batch size.
//
// GaussianNoise (stable across versions): SplitMix64 seeded with `seed` yields 64-bit words; each
// pair (u1, u2) of words becomes two normals by Box–Muller in float64:
//   a = (u1 >> 11 + 1) · 2⁻⁵³ ∈ (0, 1], b = (u2 >> 11) · 2⁻⁵³ ∈ [0, 1),
//   z0 = √(−2 ln a) · cos(2πb), z1 = √(−2 ln a) · sin(2πb), each rounded to float32.
//
// NoiseStreams (one definition for generate, rfid, fid and the search), with S = C·H·W values per image:
//   - initial noise: image i's is normals [i·S, (i+1)·S) of GaussianNoise(seed), i.e. the stream in
//     NCHW order over the images (unless the caller gives the initial noise);
//   - variance noise (DDIM with eta > 0, DDPM): image i has its own stream
//     GaussianNoise(seed: varianceSeed(seed, image: i)); each step that draws noise takes its next S values.
//   - encoder sample noise (image-to-image: the ε of the VAE latent distribution's sample): image i's
//     is the first S values of GaussianNoise(seed: varianceSeed(seed ^ 0xE5C0DE, image: i)).
// None depends on the batch size or on which other images share a batch, so a batch of images
// i…j is the same whether it is generated alone, after others, or padded.
import Foundation

public struct GaussianNoise: Sendable {
    private var generator: SplitMix64
    private var spare: Float?

    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    /// The stream of `seed` from its `position`-th normal on (O(1): SplitMix64's state after k words is seed + k·γ).
    public init(seed: UInt64, position: Int) {
        precondition(position >= 0, "position must be ≥ 0")
        generator = SplitMix64(seed: seed &+ UInt64(position / 2 * 2) &* 0x9E37_79B9_7F4A_7C15)
        if position % 2 == 1 { _ = next() }
    }

    public mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let a = (Double(generator.next() >> 11) + 1) * 0x1p-53
        let b = Double(generator.next() >> 11) * 0x1p-53
        let r = (-2 * log(a)).squareRoot()
        spare = Float(r * sin(2 * Double.pi * b))
        return Float(r * cos(2 * Double.pi * b))
    }

    public mutating func fill(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
}

/// The noise streams of a generation from one seed (see the file's header for the definition).
public struct NoiseStreams: Sendable {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }

    /// The seed of image `i`'s variance-noise stream: SplitMix64's word i of the seed offset by 0x5DEECE66D.
    public static func varianceSeed(_ seed: UInt64, image i: Int) -> UInt64 {
        var g = SplitMix64(seed: (seed &+ 0x5DEECE66D) &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        return g.next()
    }

    /// Initial noise of images `images` [n, C, H, W], `imageSize` = C·H·W values each.
    public func initialNoise(images: Range<Int>, imageSize: Int) -> [Float] {
        var g = GaussianNoise(seed: seed, position: images.lowerBound * imageSize)
        return g.fill(images.count * imageSize)
    }

    /// The ε of image-to-image's VAE latent samples for images `images` [n, C, h, w].
    public func encoderSampleNoise(images: Range<Int>, imageSize: Int) -> [Float] {
        images.flatMap { i -> [Float] in
            var g = GaussianNoise(seed: Self.varianceSeed(seed ^ 0xE5C0DE, image: i))
            return g.fill(imageSize)
        }
    }

    /// The variance-noise streams of images `images`.
    public func variance(images: Range<Int>, imageSize: Int) -> VarianceNoise {
        VarianceNoise(generators: images.map { GaussianNoise(seed: Self.varianceSeed(seed, image: $0)) }, imageSize: imageSize)
    }
}

/// Per-image variance noise for a batch: each draw takes the next `imageSize` values of every image's stream.
public struct VarianceNoise: Sendable {
    var generators: [GaussianNoise]
    public let imageSize: Int

    public init(generators: [GaussianNoise], imageSize: Int) { self.generators = generators; self.imageSize = imageSize }

    /// Values for one step of the whole batch [batch, C, H, W].
    public mutating func fill() -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(generators.count * imageSize)
        for i in generators.indices { out += generators[i].fill(imageSize) }
        return out
    }
}
