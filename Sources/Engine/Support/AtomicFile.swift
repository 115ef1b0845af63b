// Writing files so that an error never leaves a half-written one under the user's name.
import Foundation
import GPUKernels

/// Writes `data` to a temporary file beside `path`, then renames it into place, so that a failure
/// never leaves a half-written file under the user's name. A symlink is written through (its target
/// is replaced, the link stays); a path that exists and is not a regular file (a device such as
/// /dev/null, a FIFO) is written to directly, never replaced by a file.
public func writeAtomically(_ data: Data, to path: String) throws {
    let file = try AtomicFile(path)
    try file.write(data)
    try file.commit()
}

/// A file written in pieces under the same rule as `writeAtomically`: the pieces go to a temporary
/// file beside the target, renamed into place by `commit()`; dropped without a commit, the temporary
/// file is removed and the user's file is untouched.
public final class AtomicFile {
    public let path: String
    private let target: String
    private let temporary: String?
    private let handle: FileHandle
    private var committed = false

    public init(_ path: String) throws {
        self.path = path
        // The final target of a symlink chain (a link to a missing file: the file it names).
        var target = path
        for _ in 0..<40 {
            guard let next = try? FileManager.default.destinationOfSymbolicLink(atPath: target) else { break }
            target = next.hasPrefix("/") ? next : URL(fileURLWithPath: target).deletingLastPathComponent().appendingPathComponent(next).path
        }
        self.target = target
        var info = stat()
        if stat(target, &info) == 0 && (info.st_mode & S_IFMT) != S_IFREG {
            if (info.st_mode & S_IFMT) == S_IFDIR { throw ModelError("cannot write \(path): it is a folder") }
            guard let handle = FileHandle(forWritingAtPath: target) else {
                throw ModelError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            self.handle = handle
            temporary = nil
            return
        }
        let url = URL(fileURLWithPath: target)
        let dir = url.deletingLastPathComponent()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("cannot write \(path): folder \(dir.path) does not exist")
        }
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp").path
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let handle = FileHandle(forWritingAtPath: tmp) else {
            throw ModelError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        self.handle = handle
        temporary = tmp
    }

    deinit {
        try? handle.close()
        if !committed, let temporary { try? FileManager.default.removeItem(atPath: temporary) }
    }

    public func write(_ data: Data) throws {
        do { try handle.write(contentsOf: data) } catch { throw ModelError("cannot write \(path): \(describeFileError(error))") }
    }

    /// Renames the temporary file into place (nothing to do for a device or FIFO, written directly).
    public func commit() throws {
        do { try handle.close() } catch { throw ModelError("cannot write \(path): \(describeFileError(error))") }
        committed = true
        guard let temporary else { return }
        guard rename(temporary, target) == 0 else {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw ModelError("cannot write \(path): \(why)")
        }
    }
}
