// One place to set up logging for a Tessel program (glog underneath).
#pragma once

namespace tessel {

// Initialises logging once per process; later calls do nothing. Logs go to stderr.
void init_logging(const char* program_name);

}  // namespace tessel
