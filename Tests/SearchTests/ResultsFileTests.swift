// The results file: every search results file and step plan committed under docs/ loads (the
// "compatible with files made before X" promises), version 1 files read their "rfid"-named scores
// as the fitness, are written back as version 2, and a search continues from one as from the file
// this build writes; a version from the future is refused with the versions this build reads.
import Engine
import Foundation
import Search
import Testing
import TestSupport

/// Every JSON file under the repository's docs/ with a "format" of ours, by format.
func committedFiles() throws -> [(url: URL, format: String)] {
    let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs").standardizedFileURL
    let walker = FileManager.default.enumerator(at: docs, includingPropertiesForKeys: nil)!
    var files: [(URL, String)] = []
    for case let url as URL in walker where url.pathExtension == "json" {
        let raw = try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any]
        if let format = raw?["format"] as? String { files.append((url, format)) }
    }
    return files.sorted { $0.0.path < $1.0.path }
}

/// `report`'s JSON as version 1 wrote it: records' and logs' scores named "rfid" and "best_rfid".
func versionOne(_ data: Data) throws -> Data {
    var raw = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    raw["version"] = 1
    var state = raw["state"] as! [String: Any]
    state["records"] = (state["records"] as! [String: [String: Any]]).mapValues { r in
        var r = r
        r["rfid"] = r.removeValue(forKey: "fitness")
        return r
    }
    state["generations"] = (state["generations"] as! [[String: Any]]).map { g in
        var g = g
        g["best_rfid"] = g.removeValue(forKey: "best_fitness")
        return g
    }
    raw["state"] = state
    return try JSONSerialization.data(withJSONObject: raw, options: [.sortedKeys])
}

@Suite struct ResultsFileTests {
    @Test func everyCommittedFileLoads() throws {
        let files = try committedFiles()
        let results = files.filter { $0.format == SearchReport.format }, plans = files.filter { $0.format == "flexiffusion-step-plan" }
        #expect(results.count >= 9 && plans.count >= 7, "\(results.count) results files and \(plans.count) plans under docs/")
        let folder = try ModelFolder(path: try DefaultModel.folder())
        let config = try UNetConfiguration.load(from: folder.configURL)
        for (url, _) in results {
            let raw = try #require(try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any])
            let report = try SearchReport.load(from: url)
            // Version 1's "rfid" scores are the records' fitness, whatever the fitness was.
            let records = (raw["state"] as! [String: Any])["records"] as! [String: [String: Any]]
            #expect(records.count == report.state.records.count && !records.isEmpty, "\(url.lastPathComponent)")
            // (JSONSerialization's numbers may be an ulp off JSONDecoder's exact ones.)
            for (key, r) in records {
                let scores = (r["fitness"] ?? r["rfid"]) as! [String: Double], mine = report.state.records[key]?.fitness
                #expect(mine?.counts == scores.keys.map { Int($0)! }.sorted()
                        && scores.allSatisfy { abs(mine![Int($0.key)!]! - $0.value) <= 1e-14 * abs($0.value) }, "\(url.lastPathComponent): \(key)")
            }
            // Its best plan runs on the model it was searched for (the default model here).
            let best = try StepPlan.load(from: url)
            if report.model.hasPrefix("default") {
                try best.validate(branchCount: config.branchCount, schedulerConfiguration: try folder.schedulerConfiguration())
            }
            #expect(best == report.bestPlan, "\(url.lastPathComponent): the file's best plan")
        }
        for (url, _) in plans {
            try StepPlan.load(from: url).validate(branchCount: config.branchCount, schedulerConfiguration: try folder.schedulerConfiguration())
        }
    }

    /// A version 1 file is read, written back as version 2 with the same state, and read again.
    @Test func versionOneIsWrittenBackAsVersionTwo() throws {
        let url = try #require(try committedFiles().first { $0.format == SearchReport.format }).url
        let old = try SearchReport.load(from: url)
        let data = try old.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"version\" : 2") && text.contains("\"fitness\" : {") && text.contains("\"best_fitness\""))
        #expect(!text.contains("\"rfid\" : {") && !text.contains("\"best_rfid\""), "version 2 names the scores after the fitness")
        let again = try SearchReport.decode(data)
        #expect(again.state.records == old.state.records && again.state.generations == old.state.generations
                && again.state.settings == old.state.settings && again.state.race == old.state.race)
        // And version 1 as it was written decodes to the same.
        let back = try SearchReport.decode(try versionOne(data))
        #expect(back.state.records == old.state.records && back.state.generations == old.state.generations)
    }

    @Test func aFutureVersionIsRefusedNamingTheReadableOnes() throws {
        var raw = try #require(try JSONSerialization.jsonObject(with: try Data(contentsOf: try committedFiles().first { $0.format == SearchReport.format }!.url)) as? [String: Any])
        raw["version"] = 3
        expectError(containing: ["version 3 is not supported", "versions 1–2"]) {
            _ = try SearchReport.decode(try JSONSerialization.data(withJSONObject: raw))
        }
    }
}
