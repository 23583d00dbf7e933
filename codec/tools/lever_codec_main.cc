// lever-codec: converts one value between JSON text, msgpack and proto-JSON
// wire bytes, reading stdin and writing stdout. A small tool for looking at
// what Lever puts on the wire:
//   echo '["world"]' | lever-codec --from json --to proto-json | xxd
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include <CLI/CLI.hpp>

#include "lever/json.h"
#include "lever/msgpack.h"
#include "lever/proto_json.h"

int main(int argc, char** argv) {
  CLI::App app{"Convert one Lever value between encodings (stdin to stdout)"};
  std::string from = "json", to = "json";
  bool pretty = false;
  const std::vector<std::string> kinds = {"json", "msgpack", "proto-json"};
  app.add_option("--from", from, "Input encoding")->check(CLI::IsMember(kinds));
  app.add_option("--to", to, "Output encoding")->check(CLI::IsMember(kinds));
  app.add_flag("--pretty", pretty, "Indent JSON output");
  CLI11_PARSE(app, argc, argv);

  std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  lever::Value v;
  lever::Status s;
  if (from == "json") {
    s = lever::ParseJson(in, &v);
  } else if (from == "msgpack") {
    s = lever::DecodeMsgpack(in, &v);
  } else {
    s = lever::DecodeProtoJson(in, &v);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "lever-codec: %s\n", s.ToString().c_str());
    return 1;
  }
  std::string out;
  if (to == "json") {
    lever::JsonWriteOptions o;
    o.indent = pretty ? 2 : 0;
    o.bytes_as_base64 = true;
    s = lever::WriteJson(v, &out, o);
    out.push_back('\n');
  } else if (to == "msgpack") {
    lever::EncodeMsgpack(v, &out);
  } else {
    s = lever::EncodeProtoJson(v, &out);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "lever-codec: %s\n", s.ToString().c_str());
    return 1;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
