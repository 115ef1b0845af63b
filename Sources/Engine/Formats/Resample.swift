// Pillow's resampling of 8-bit images (`Image.resize(size, Image.BICUBIC)`, reducing_gap None), as
// transformers' CLIPImageProcessor (PIL backend) resizes before CLIP: separable, horizontal pass
// first, the bicubic kernel with a = −0.5 widened by the scale when shrinking (antialiasing),
// coefficients normalised per output pixel and rounded to 22-bit fixed point, each pass rounded and
// clipped to 8 bits. Port of Pillow's src/libImaging/Resample.c (precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResample{Horizontal,Vertical}_8bpc), so that the result equals
// Pillow's byte for byte.
import Foundation

/// An 8-bit image, channels interleaved (HWC), as Pillow holds one.
public struct Image8: Sendable, Equatable {
    public var width: Int, height: Int, channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "image size mismatch")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// Pillow's `resize((width, height), BICUBIC)`; the same size returns the image itself.
    public func resizedBicubic(width outW: Int, height outH: Int) -> Image8 {
        precondition(outW > 0 && outH > 0, "a resize needs a positive size")
        var image = self
        if outW != width { image = image.horizontalPass(outW) }
        if outH != height { image = image.verticalPass(outH) }
        return image
    }

    /// transformers' `center_crop` (the crop's top-left at ((H − h) div 2, (W − w) div 2)); the image
    /// must be at least the crop's size.
    public func centreCropped(width w: Int, height h: Int) -> Image8 {
        precondition(w <= width && h <= height, "a centre crop larger than the image")
        let top = (height - h) / 2, left = (width - w) / 2, c = channels
        var out = [UInt8](); out.reserveCapacity(w * h * c)
        for y in top..<(top + h) { out += pixels[((y * width + left) * c)..<((y * width + left + w) * c)] }
        return Image8(width: w, height: h, channels: c, pixels: out)
    }

    static let precisionBits = 32 - 8 - 2

    static func bicubic(_ v: Double) -> Double {
        let a = -0.5, x = abs(v)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// For each output position: the first input index, the number of inputs, and their fixed-point weights.
    static func coefficients(inSize: Int, outSize: Int) -> [(start: Int, weights: [Int32])] {
        let scale = Double(Float(inSize)) / Double(outSize)
        let filterScale = max(scale, 1), support = 2 * filterScale
        return (0..<outSize).map { xx in
            let centre = (Double(xx) + 0.5) * scale
            let ss = 1 / filterScale
            let xmin = max(0, Int(centre - support + 0.5))
            let xmax = min(inSize, Int(centre + support + 0.5)) - xmin
            var k = (0..<max(0, xmax)).map { x in bicubic((Double(x + xmin) - centre + 0.5) * ss) }
            let ww = k.reduce(0, +)
            if ww != 0 { k = k.map { $0 / ww } }
            let one = Double(1 << precisionBits)
            return (xmin, k.map { $0 < 0 ? Int32(-0.5 + $0 * one) : Int32(0.5 + $0 * one) })
        }
    }

    static func clip8(_ sum: Int) -> UInt8 { UInt8(clamping: sum >> precisionBits) }

    func horizontalPass(_ outW: Int) -> Image8 {
        let coeffs = Self.coefficients(inSize: width, outSize: outW), c = channels
        var out = [UInt8](repeating: 0, count: outW * height * c)
        for y in 0..<height {
            let row = y * width * c
            for (xx, k) in coeffs.enumerated() {
                for b in 0..<c {
                    var sum = 1 << (Self.precisionBits - 1)
                    for (i, w) in k.weights.enumerated() { sum += Int(pixels[row + (k.start + i) * c + b]) * Int(w) }
                    out[(y * outW + xx) * c + b] = Self.clip8(sum)
                }
            }
        }
        return Image8(width: outW, height: height, channels: c, pixels: out)
    }

    func verticalPass(_ outH: Int) -> Image8 {
        let coeffs = Self.coefficients(inSize: height, outSize: outH), c = channels, rowLength = width * c
        var out = [UInt8](repeating: 0, count: width * outH * c)
        for (yy, k) in coeffs.enumerated() {
            for x in 0..<rowLength {
                var sum = 1 << (Self.precisionBits - 1)
                for (i, w) in k.weights.enumerated() { sum += Int(pixels[(k.start + i) * rowLength + x]) * Int(w) }
                out[yy * rowLength + x] = Self.clip8(sum)
            }
        }
        return Image8(width: width, height: outH, channels: c, pixels: out)
    }
}
