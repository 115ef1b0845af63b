// Writing files so that an error never leaves a half-written one under the user's name.
import Foundation

/// Writes `data` to a temporary file beside `path`, then renames it into place, so that a failure
/// never leaves a half-written file under the user's name.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent()
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
        throw ModelError("cannot write \(path): folder \(dir.path) does not exist")
    }
    let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    guard FileManager.default.createFile(atPath: tmp.path, contents: data) else {
        throw ModelError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    guard rename(tmp.path, path) == 0 else {
        let why = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: tmp)
        throw ModelError("cannot write \(path): \(why)")
    }
}
