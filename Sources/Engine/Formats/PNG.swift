// A minimal PNG encoder (8-bit grey or RGB, stored deflate blocks: no compression library needed)
// and the conversion from model space [-1, 1] to pixels that diffusers' pipelines use.
import Foundation

public enum PNG {
    /// Encodes `pixels` (row-major, `channels` bytes per pixel: 1 grey, 3 RGB).
    public static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> Data {
        precondition(channels == 1 || channels == 3, "PNG: 1 or 3 channels")
        precondition(pixels.count == width * height * channels, "PNG: pixel count")
        var raw = [UInt8]()
        raw.reserveCapacity(height * (1 + width * channels))
        for y in 0..<height {
            raw.append(0)  // filter: none
            raw += pixels[(y * width * channels)..<((y + 1) * width * channels)]
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let last: UInt8 = offset + n == raw.count ? 1 : 0
            zlib += [last, UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8((~n >> 8) & 0xff)]
            zlib += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        zlib += bigEndian(adler32(raw))
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, channels == 1 ? 0 : 2, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return Data(png)
    }

    /// Images [N, C, H, W] in model space → pixels, as diffusers does: ((x / 2 + 0.5).clamp(0, 1) · 255).round().
    public static func pixels(_ x: Float) -> UInt8 {
        UInt8((min(max(x / 2 + 0.5, 0), 1) * 255).rounded())
    }

    /// A grid of the images of `batch` [N, C, H, W] (C 1 or 3), `columns` wide, with a 2-pixel border.
    public static func grid(_ images: [Float], count n: Int, channels c: Int, height h: Int, width w: Int,
                            columns: Int? = nil) -> (width: Int, height: Int, pixels: [UInt8]) {
        var g = Grid(count: n, channels: c, height: h, width: w, columns: columns)
        for i in 0..<n { g.place(images[(i * c * h * w)..<((i + 1) * c * h * w)], at: i) }
        return (g.width, g.height, g.pixels)
    }

    /// A grid filled an image at a time (8-bit pixels only are kept).
    public struct Grid {
        public let count: Int, channels: Int, imageHeight: Int, imageWidth: Int, columns: Int
        public let width: Int, height: Int
        public private(set) var pixels: [UInt8]
        static let pad = 2

        public init(count n: Int, channels c: Int, height h: Int, width w: Int, columns: Int? = nil) {
            self.count = n; channels = c; imageHeight = h; imageWidth = w
            self.columns = columns ?? Self.columns(count: n)
            let rows = (n + self.columns - 1) / self.columns
            width = self.columns * (w + Self.pad) + Self.pad; height = rows * (h + Self.pad) + Self.pad
            pixels = [UInt8](repeating: 0, count: width * height * c)
        }

        /// Columns of a grid of `n` images: as near square as whole rows allow.
        public static func columns(count n: Int) -> Int { Int(Double(n).squareRoot().rounded(.up)) }

        /// Bytes of a grid of `n` images of c × h × w (the product in floating point: no overflow for any count a run takes).
        public static func bytes(count n: Int, channels c: Int, height h: Int, width w: Int) -> Double {
            let cols = columns(count: n), rows = (n + cols - 1) / cols
            return Double(cols * (w + pad) + pad) * Double(rows * (h + pad) + pad) * Double(c)
        }

        /// Image `i` [C, H, W] in model space.
        public mutating func place(_ image: ArraySlice<Float>, at i: Int) {
            let (c, h, w, W) = (channels, imageHeight, imageWidth, width)
            let ox = Self.pad + (i % columns) * (w + Self.pad), oy = Self.pad + (i / columns) * (h + Self.pad)
            let base = image.startIndex
            for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                pixels[((oy + y) * W + ox + x) * c + ch] = PNG.pixels(image[base + (ch * h + y) * w + x])
            } } }
        }
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32(body))
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for chunk in stride(from: 0, to: bytes.count, by: 5552) {
            for v in bytes[chunk..<min(chunk + 5552, bytes.count)] { a += UInt32(v); b += a }
            a %= 65521; b %= 65521
        }
        return (b << 16) | a
    }
}
