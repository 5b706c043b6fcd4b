// `sweep run`: the cells of one shard evaluated in turn in this process, each an ordinary resumable run folder.
#pragma once
#include <cstdio>
#include <vector>

#include "sweep/sweep.h"

namespace bq::sweep {

struct ShardTally {
  int finished = 0;     // ran to the end here
  int already = 0;      // finished before (skipped)
  int elsewhere = 0;    // another process holds the folder (skipped)
  int unrunnable = 0;   // not planned, or fits no GPU class (reported, not run)
  int failed = 0;       // an error; recorded in the cell's kCellErrorFile
};

// Runs cells[i] for i in `indices`: finished cells and cells another process holds are skipped, the rest resume from
// their samples. Consecutive cells of one model and precision share the loaded model (the cells are taken grouped
// so, in the order of their first appearance). A cell's error is written to its folder and the next cell runs; a
// finished cell's earlier error record is removed. One line per cell goes to `log`.
ShardTally run_cells(const SweepFile& s, const std::vector<Cell>& cells, const std::vector<size_t>& indices,
                     std::FILE* log);

}  // namespace bq::sweep
