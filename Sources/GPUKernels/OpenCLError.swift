// The one error type of the device layer: the failing call, the OpenCL status and its name,
// and the program build log where there is one.
import COpenCL

public struct OpenCLError: Error, CustomStringConvertible, Sendable {
    /// The OpenCL or CLBlast call that failed, or the operation that could not be done.
    public let call: String
    /// The OpenCL status code (or CLBlast status code), 0 for errors that carry no status.
    public let status: Int32
    /// The compiler's log, for program builds.
    public let buildLog: String?
    /// Extra context (which device, which kernel, what the user asked for).
    public let detail: String?

    public init(call: String, status: Int32 = 0, buildLog: String? = nil, detail: String? = nil) {
        self.call = call
        self.status = status
        self.buildLog = buildLog
        self.detail = detail
    }

    public var statusName: String { OpenCLError.name(ofStatus: status) }

    public var description: String {
        var s = "\(call) failed"
        if status != 0 { s += " with \(statusName) (\(status))" }
        if let detail { s += ": \(detail)" }
        if let log = buildLog, !log.isEmpty { s += "\n--- build log ---\n\(log)" }
        return s
    }

    /// Names of the OpenCL status codes (CL/cl.h) and of CLBlast's own codes (clblast_c.h).
    public static func name(ofStatus status: Int32) -> String {
        switch status {
        case 0: return "CL_SUCCESS"
        case -1: return "CL_DEVICE_NOT_FOUND"
        case -2: return "CL_DEVICE_NOT_AVAILABLE"
        case -3: return "CL_COMPILER_NOT_AVAILABLE"
        case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
        case -5: return "CL_OUT_OF_RESOURCES"
        case -6: return "CL_OUT_OF_HOST_MEMORY"
        case -7: return "CL_PROFILING_INFO_NOT_AVAILABLE"
        case -8: return "CL_MEM_COPY_OVERLAP"
        case -9: return "CL_IMAGE_FORMAT_MISMATCH"
        case -10: return "CL_IMAGE_FORMAT_NOT_SUPPORTED"
        case -11: return "CL_BUILD_PROGRAM_FAILURE"
        case -12: return "CL_MAP_FAILURE"
        case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET"
        case -14: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"
        case -15: return "CL_COMPILE_PROGRAM_FAILURE"
        case -16: return "CL_LINKER_NOT_AVAILABLE"
        case -17: return "CL_LINK_PROGRAM_FAILURE"
        case -18: return "CL_DEVICE_PARTITION_FAILED"
        case -19: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"
        case -30: return "CL_INVALID_VALUE"
        case -31: return "CL_INVALID_DEVICE_TYPE"
        case -32: return "CL_INVALID_PLATFORM"
        case -33: return "CL_INVALID_DEVICE"
        case -34: return "CL_INVALID_CONTEXT"
        case -35: return "CL_INVALID_QUEUE_PROPERTIES"
        case -36: return "CL_INVALID_COMMAND_QUEUE"
        case -37: return "CL_INVALID_HOST_PTR"
        case -38: return "CL_INVALID_MEM_OBJECT"
        case -39: return "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"
        case -40: return "CL_INVALID_IMAGE_SIZE"
        case -41: return "CL_INVALID_SAMPLER"
        case -42: return "CL_INVALID_BINARY"
        case -43: return "CL_INVALID_BUILD_OPTIONS"
        case -44: return "CL_INVALID_PROGRAM"
        case -45: return "CL_INVALID_PROGRAM_EXECUTABLE"
        case -46: return "CL_INVALID_KERNEL_NAME"
        case -47: return "CL_INVALID_KERNEL_DEFINITION"
        case -48: return "CL_INVALID_KERNEL"
        case -49: return "CL_INVALID_ARG_INDEX"
        case -50: return "CL_INVALID_ARG_VALUE"
        case -51: return "CL_INVALID_ARG_SIZE"
        case -52: return "CL_INVALID_KERNEL_ARGS"
        case -53: return "CL_INVALID_WORK_DIMENSION"
        case -54: return "CL_INVALID_WORK_GROUP_SIZE"
        case -55: return "CL_INVALID_WORK_ITEM_SIZE"
        case -56: return "CL_INVALID_GLOBAL_OFFSET"
        case -57: return "CL_INVALID_EVENT_WAIT_LIST"
        case -58: return "CL_INVALID_EVENT"
        case -59: return "CL_INVALID_OPERATION"
        case -60: return "CL_INVALID_GL_OBJECT"
        case -61: return "CL_INVALID_BUFFER_SIZE"
        case -63: return "CL_INVALID_GLOBAL_WORK_SIZE"
        case -64: return "CL_INVALID_PROPERTY"
        case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"
        // CLBlast's own codes.
        case -1024: return "CLBlastNotImplemented"
        case -1022: return "CLBlastInvalidMatrixA"
        case -1021: return "CLBlastInvalidMatrixB"
        case -1020: return "CLBlastInvalidMatrixC"
        case -1019: return "CLBlastInvalidVectorX"
        case -1018: return "CLBlastInvalidVectorY"
        case -1017: return "CLBlastInvalidDimension"
        case -1016: return "CLBlastInvalidLeadDimA"
        case -1015: return "CLBlastInvalidLeadDimB"
        case -1014: return "CLBlastInvalidLeadDimC"
        case -1013: return "CLBlastInvalidIncrementX"
        case -1012: return "CLBlastInvalidIncrementY"
        case -1011: return "CLBlastInsufficientMemoryA"
        case -1010: return "CLBlastInsufficientMemoryB"
        case -1009: return "CLBlastInsufficientMemoryC"
        case -1008: return "CLBlastInsufficientMemoryX"
        case -1007: return "CLBlastInsufficientMemoryY"
        case -2050: return "CLBlastInsufficientMemoryTemp"
        case -2049: return "CLBlastInvalidBatchCount"
        case -2048: return "CLBlastInvalidOverrideKernel"
        case -2047: return "CLBlastMissingOverrideParameter"
        case -2046: return "CLBlastInvalidLocalMemUsage"
        case -2045: return "CLBlastNoHalfPrecision"
        case -2044: return "CLBlastNoDoublePrecision"
        case -2043: return "CLBlastInvalidVectorScalar"
        case -2042: return "CLBlastInsufficientMemoryScalar"
        case -2041: return "CLBlastDatabaseError"
        case -2040: return "CLBlastUnknownError"
        case -2039: return "CLBlastUnexpectedError"
        default: return "unknown status"
        }
    }
}

/// Throws an `OpenCLError` naming `call` unless `status` is CL_SUCCESS.
@inline(__always)
func check(_ status: cl_int, _ call: @autoclosure () -> String) throws {
    if status != CL_SUCCESS { throw OpenCLError(call: call(), status: status) }
}
