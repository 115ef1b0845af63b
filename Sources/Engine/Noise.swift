// Deterministic Gaussian noise: the same seed gives the same numbers on every run and device.
//
// Definition (stable across versions): SplitMix64 seeded with `seed` yields 64-bit words; each pair
// (u1, u2) of words becomes two normals by Box–Muller in float64:
//   a = (u1 >> 11 + 1) · 2⁻⁵³ ∈ (0, 1], b = (u2 >> 11) · 2⁻⁵³ ∈ [0, 1),
//   z0 = √(−2 ln a) · cos(2πb), z1 = √(−2 ln a) · sin(2πb), each rounded to float32.
// A sampler draws the initial noise first, in NCHW order, then each step's variance noise.
import Foundation

public struct GaussianNoise: Sendable {
    private var generator: SplitMix64
    private var spare: Float?

    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

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
