// A command's outputs checked before any work: no output is one of the command's inputs or another
// of its outputs (compared by the file a path reaches: relative paths, symlinks and hard links
// resolved), none lies in an input folder where it would replace a file, each file's folder exists
// and is writable, and none replaces a search's results file that the command was not asked to
// continue. And a lock, so that two processes never write one results file at once.
import Foundation
import GPUKernels

/// A path a command reads or writes, with the option that named it (for messages).
public struct NamedPath: Sendable, Equatable {
    public var option: String
    public var path: String
    public init(_ option: String, _ path: String) { self.option = option; self.path = path }

    /// The paths of the options that were given, in order ((option, nil): not given).
    public static func given(_ options: [(String, String?)]) -> [NamedPath] {
        options.compactMap { option, path in path.map { NamedPath(option, $0) } }
    }
}

/// What a path names, symlinks followed: nothing (with the reason), a regular file, a folder, or
/// something else (a FIFO, a socket, a device).
public enum FileKind: Equatable, Sendable {
    case missing(errno: Int32), regular, folder, other

    public init(_ path: String) {
        var s = stat()
        guard stat(path, &s) == 0 else { self = .missing(errno: errno); return }
        switch s.st_mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .folder
        default: self = .other
        }
    }

    public var exists: Bool { if case .missing = self { return false }; return true }
}

public enum OutputCheck {
    /// Refuses (as the command line's fault) outputs that would clobber an input or each other, a file
    /// output whose folder is missing or read-only, a file output that is a folder, and an existing
    /// search results file among the outputs other than `ownResults` (the files of the search that
    /// continues or replaces them).
    /// `folders` are output folders (created when missing).
    public static func check(outputs: [NamedPath], folders: [NamedPath] = [], inputs: [NamedPath], ownResults: [String] = []) throws {
        let all = outputs + folders
        for o in all where o.path == "-" || o.path.isEmpty {
            throw ModelError(argument: "\(o.option) \(o.path.isEmpty ? "\"\"" : "-"): give a file name (outputs are files; standard output is not one of them)")
        }
        for (i, a) in all.enumerated() {
            for b in all[(i + 1)...] where sameFile(a.path, b.path) {
                throw ModelError(argument: "\(a.option) \(a.path) and \(b.option) \(b.path) are the same file: one would replace the other")
            }
            for input in inputs where sameFile(a.path, input.path) {
                throw ModelError(argument: "\(a.option) \(a.path) is \(input.option) \(input.path), which this command reads: writing it would replace it")
            }
            for input in inputs where isFolder(input.path) && exists(a.path) && isInside(a.path, folder: input.path)
                && !ownResults.contains(where: { sameFile(a.path, $0) }) && reads(input, a.path) {
                throw ModelError(argument: "\(a.option) \(a.path) is a file of \(input.option) \(input.path), which this command reads: writing it would replace it")
            }
        }
        for o in all {
            // (Outputs are written as ".NAME.PID.tmp" first: a name near the file system's 255-byte
            // limit would fail only after the work.)
            let name = URL(fileURLWithPath: o.path).lastPathComponent
            if name.utf8.count > 230 {
                throw ModelError(argument: "\(o.option): the name \(name.prefix(40))… is \(name.utf8.count) bytes; give one of at most 230")
            }
        }
        for o in outputs {
            if isFolder(o.path) { throw ModelError(argument: "\(o.option) \(o.path) is a folder; give a file name") }
            let dir = resolved(o.path).deletingLastPathComponent().path
            guard isFolder(dir) else { throw ModelError(argument: "\(o.option) \(o.path): folder \(dir) does not exist") }
            guard access(dir, W_OK) == 0 else { throw ModelError(argument: "\(o.option) \(o.path): folder \(dir) is not writable") }
            if ownResults.contains(where: { sameFile(o.path, $0) }) { continue }
            if holdsSearchResults(o.path) {
                throw ModelError(argument: "\(o.option) \(o.path) holds a search's results (its best plan and every scored plan); give another file name, or remove it first")
            }
        }
        for f in folders where exists(f.path) && !isFolder(f.path) {
            throw ModelError(argument: "\(f.option) \(f.path) is a file, not a folder")
        }
    }

    /// The absolute path a path reaches: symlinks resolved in the longest part that exists.
    static func resolved(_ path: String) -> URL {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if exists(url.path) { return url.resolvingSymlinksInPath() }
        let parent = url.deletingLastPathComponent()
        if parent.path == url.path { return url }
        return resolved(parent.path).appendingPathComponent(url.lastPathComponent)
    }

    /// Whether two paths reach the same file: the same resolved path, or the same device and inode.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        if resolved(a).path == resolved(b).path { return true }
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    static func exists(_ path: String) -> Bool { FileKind(path).exists }

    /// Whether the command reads `file` of the folder `input`: a model folder's weights, configs and
    /// tokenizer files (a picture or page left there is not the model's), any file of another folder.
    static func reads(_ input: NamedPath, _ file: String) -> Bool {
        guard input.option == "--model" else { return true }
        return ["safetensors", "json", "txt", "bin"].contains(URL(fileURLWithPath: file).pathExtension.lowercased())
    }

    static func isFolder(_ path: String) -> Bool { FileKind(path) == .folder }

    static func isInside(_ path: String, folder: String) -> Bool {
        let p = resolved(path).path, f = resolved(folder).path
        return p.hasPrefix(f.hasSuffix("/") ? f : f + "/")
    }

    /// Whether `path` is a regular file whose JSON says it is a search's results.
    static func holdsSearchResults(_ path: String) -> Bool {
        var s = stat()
        guard stat(path, &s) == 0, (s.st_mode & S_IFMT) == S_IFREG, s.st_size < 1 << 30,
              let data = FileManager.default.contents(atPath: path), data.first == UInt8(ascii: "{"),
              let raw = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return raw["format"] as? String == "flexiffusion-search"
    }
}

/// An exclusive lock beside a file (`.NAME.lock` in its folder, holding the process id), held until
/// `release()` or the lock's end: a second process asking for it is refused, naming the first.
public final class FileLock {
    public let path: String
    private var descriptor: Int32

    /// Takes the lock for `file`, or throws naming the process that holds it (`what` says what the file is).
    public init(for file: String, what: String) throws {
        let url = OutputCheck.resolved(file)
        let path = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).lock").path
        // (The descriptor is the lock's only once it is held: a refused lock closes its own descriptor
        // and never reaches `release()`, which would close a number another file may have by then and
        // remove the holder's lock file.)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ModelError("cannot lock \(file): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            let holder = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            close(fd)
            throw ModelError("\(file) is being written by another \(what) (process \(holder)); wait for it to end, or give another file")
        }
        self.path = path
        descriptor = fd
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
    }

    /// Releases the lock and removes its file.
    public func release() {
        guard descriptor >= 0 else { return }
        unlink(path)
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
