// Graph files (graph/serialize.h): text or binary GraphDefs, whichever the first byte picks. A
// graph accepted once must be written and read back as the same text.
#include "core/error.h"
#include "graph/graph.h"
#include "graph/serialize.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessel;
  if (size == 0) return 0;
  const std::string_view rest = fuzz::text_of(data + 1, size - 1);
  std::string text;
  try {
    Graph graph;
    if (data[0] % 2 == 0) {
      graph_from_text(graph, rest);
    } else {
      graph_from_binary(graph, rest);
    }
    text = graph_to_text(graph);
  } catch (const Error&) {
    return 0;
  }
  try {
    Graph back;
    graph_from_text(back, text);
    fuzz::expect(graph_to_text(back) == text, "a graph read back differs from the one written", text);
  } catch (const Error& error) {
    fuzz::expect(false, "an accepted graph, written again, is refused", error.what());
  }
  return 0;
}
