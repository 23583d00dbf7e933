// Codec throughput: lever's msgpack, JSON text and proto-JSON codecs beside
// what a user would pick instead (nlohmann::json for JSON and msgpack) and raw
// msgpack-c object unpacking, on a small RPC-like payload and a large mixed
// document. bytes_per_second is the encoded size (msgpack size for msgpack
// rows, JSON text size for JSON rows, wire size for proto-JSON rows).
#include <benchmark/benchmark.h>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "lever/json.h"
#include "lever/msgpack.h"
#include "lever/proto_json.h"

namespace {

using lever::Array;
using lever::Map;
using lever::Value;

// The arguments of a typical call: a few short strings and numbers.
Value SmallPayload() {
  return Value(Array{"world", 42, Map{{"user", "ada"}, {"id", 1234567}, {"admin", false}, {"score", 0.75}}});
}

// ~1 MB: an array of records with nested arrays, strings, numbers and bools.
Value LargeDocument() {
  Array records;
  for (int i = 0; i < 4000; ++i) {
    records.push_back(Map{{"id", i},
                          {"name", "record number " + std::to_string(i)},
                          {"ratio", i / 7.0},
                          {"active", i % 3 == 0},
                          {"tags", Array{"alpha", "beta", "gamma"}},
                          {"nested", Map{{"x", i * 1000003LL}, {"y", -i}, {"note", nullptr}}}});
  }
  return Value(Map{{"version", 1}, {"records", std::move(records)}});
}

const Value& Payload(int which) {
  static const Value small = SmallPayload();
  static const Value large = LargeDocument();
  return which == 0 ? small : large;
}

std::string JsonText(int which) {
  std::string s;
  (void)lever::WriteJson(Payload(which), &s);
  return s;
}

void SetLabel(benchmark::State& state) { state.SetLabel(state.range(0) == 0 ? "small" : "large"); }

void BM_LeverMsgpackEncode(benchmark::State& state) {
  const Value& v = Payload(state.range(0));
  std::string out;
  for (auto _ : state) {
    out.clear();
    lever::EncodeMsgpack(v, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * out.size());
  SetLabel(state);
}

void BM_LeverMsgpackDecode(benchmark::State& state) {
  std::string in = lever::EncodeMsgpack(Payload(state.range(0)));
  for (auto _ : state) {
    Value v;
    if (!lever::DecodeMsgpack(in, &v).ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * in.size());
  SetLabel(state);
}

void BM_LeverMsgpackViewParse(benchmark::State& state) {
  std::string in = lever::EncodeMsgpack(Payload(state.range(0)));
  for (auto _ : state) {
    lever::MsgpackView view;
    if (!lever::MsgpackView::Parse(in, &view).ok()) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(view);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * in.size());
  SetLabel(state);
}

void BM_MsgpackCUnpack(benchmark::State& state) {
  std::string in = lever::EncodeMsgpack(Payload(state.range(0)));
  for (auto _ : state) {
    msgpack::object_handle oh = msgpack::unpack(in.data(), in.size());
    benchmark::DoNotOptimize(oh.get());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * in.size());
  SetLabel(state);
}

void BM_NlohmannFromMsgpack(benchmark::State& state) {
  std::string in = lever::EncodeMsgpack(Payload(state.range(0)));
  for (auto _ : state) {
    nlohmann::json j = nlohmann::json::from_msgpack(in);
    benchmark::DoNotOptimize(j);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * in.size());
  SetLabel(state);
}

void BM_NlohmannToMsgpack(benchmark::State& state) {
  nlohmann::json j = nlohmann::json::parse(JsonText(state.range(0)));
  size_t size = 0;
  for (auto _ : state) {
    std::vector<uint8_t> out = nlohmann::json::to_msgpack(j);
    size = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * size);
  SetLabel(state);
}

void BM_LeverJsonParse(benchmark::State& state) {
  std::string text = JsonText(state.range(0));
  for (auto _ : state) {
    Value v;
    if (!lever::ParseJson(text, &v).ok()) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * text.size());
  SetLabel(state);
}

void BM_LeverJsonWrite(benchmark::State& state) {
  const Value& v = Payload(state.range(0));
  std::string out;
  for (auto _ : state) {
    out.clear();
    if (!lever::WriteJson(v, &out).ok()) state.SkipWithError("write failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * out.size());
  SetLabel(state);
}

void BM_NlohmannParse(benchmark::State& state) {
  std::string text = JsonText(state.range(0));
  for (auto _ : state) {
    nlohmann::json j = nlohmann::json::parse(text);
    benchmark::DoNotOptimize(j);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * text.size());
  SetLabel(state);
}

void BM_NlohmannDump(benchmark::State& state) {
  nlohmann::json j = nlohmann::json::parse(JsonText(state.range(0)));
  size_t size = 0;
  for (auto _ : state) {
    std::string out = j.dump();
    size = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * size);
  SetLabel(state);
}

void BM_LeverProtoJsonEncode(benchmark::State& state) {
  const Value& v = Payload(state.range(0));
  std::string out;
  for (auto _ : state) {
    out.clear();
    if (!lever::EncodeProtoJson(v, &out).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * out.size());
  SetLabel(state);
}

void BM_LeverProtoJsonDecode(benchmark::State& state) {
  std::string in;
  (void)lever::EncodeProtoJson(Payload(state.range(0)), &in);
  for (auto _ : state) {
    Value v;
    if (!lever::DecodeProtoJson(in, &v).ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(v);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * in.size());
  SetLabel(state);
}

#define LEVER_CODEC_BENCH(fn) BENCHMARK(fn)->Arg(0)->Arg(1)
LEVER_CODEC_BENCH(BM_LeverMsgpackEncode);
LEVER_CODEC_BENCH(BM_NlohmannToMsgpack);
LEVER_CODEC_BENCH(BM_LeverMsgpackDecode);
LEVER_CODEC_BENCH(BM_LeverMsgpackViewParse);
LEVER_CODEC_BENCH(BM_MsgpackCUnpack);
LEVER_CODEC_BENCH(BM_NlohmannFromMsgpack);
LEVER_CODEC_BENCH(BM_LeverJsonParse);
LEVER_CODEC_BENCH(BM_NlohmannParse);
LEVER_CODEC_BENCH(BM_LeverJsonWrite);
LEVER_CODEC_BENCH(BM_NlohmannDump);
LEVER_CODEC_BENCH(BM_LeverProtoJsonEncode);
LEVER_CODEC_BENCH(BM_LeverProtoJsonDecode);

}  // namespace

BENCHMARK_MAIN();
