// The SIMT emulator's scheduler: fibers, barriers, warp collectives, shared memory.
// See runtime.h for the model. Context switches are a dozen instructions of assembly
// on x86-64 (ucontext elsewhere), so a barrier costs tens of nanoseconds per thread.
#include "runtime.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../common/launch_geometry.h"
#include "simt_emu.h"
#include "tma_emu.h"

// Fibers switch with a few lines of assembly on x86-64, with ucontext elsewhere (or
// when VK_EMU_FORCE_UCONTEXT is defined: CMake builds the emulator's tests that way
// too, so the portable path is tested on x86-64 machines as well).
#if defined(__x86_64__) && !defined(VK_EMU_FORCE_UCONTEXT)
#define VK_EMU_ASM_SWITCH 1
#else
#define VK_EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace vk {
namespace emu {

__thread ThreadView* t_thread = nullptr;
__thread BlockView* t_block = nullptr;

namespace {

constexpr size_t kSharedCanaryBytes = 64;
constexpr unsigned char kSharedPoison = 0xFF;  // NaN in fp32, fp16 and bf16 alike
constexpr unsigned char kSharedCanary = 0xA5;

// ---- context switch ------------------------------------------------------------------
#if VK_EMU_ASM_SWITCH
extern "C" void vk_emu_switch(void** save_sp, void* load_sp);
// Saves the callee-saved registers on the current stack, stores the stack pointer in
// *save_sp, loads load_sp and pops the other context's registers.
asm(R"(
  .text
  .p2align 4
  .globl vk_emu_switch
  .hidden vk_emu_switch
  .type vk_emu_switch, @function
vk_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size vk_emu_switch, .-vk_emu_switch
)");
#endif

// An integer environment variable in [lo, hi], or `fallback` when unset or empty; any
// other value (not a whole integer, out of range) is an error naming the variable.
long env_integer(const char* name, long fallback, long lo, long hi) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  int64_t v = 0;
  if (!parse_integer(env, lo, hi, v))
    throw std::runtime_error(std::string("vggkern emulator: ") + name + " must be an integer from " +
                             std::to_string(lo) + " to " + std::to_string(hi) + ", got '" + env + "'");
  return v;
}

size_t stack_bytes() {
  static const size_t bytes = static_cast<size_t>(env_integer("VGGKERN_EMU_STACK_KB", 256, 32, 1L << 20)) * 1024;
  return bytes;
}

// One mapping holding the stacks of up to kMaxThreadsPerBlock fibers, each with a
// guard page below it so an overflow faults instead of corrupting a neighbour.
class StackSet {
 public:
  StackSet() : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))), stride_(stack_bytes() + page_) {
    bytes_ = stride_ * kMaxThreadsPerBlock;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("vggkern emulator: cannot map fiber stacks");
    base_ = static_cast<char*>(p);
    for (unsigned i = 0; i < kMaxThreadsPerBlock; ++i) mprotect(base_ + i * stride_, page_, PROT_NONE);
  }
  ~StackSet() { munmap(base_, bytes_); }
  StackSet(const StackSet&) = delete;
  StackSet& operator=(const StackSet&) = delete;
  char* top(unsigned i) const { return base_ + (i + 1) * stride_; }  // 16-byte aligned
  char* bottom(unsigned i) const { return base_ + i * stride_ + page_; }

 private:
  size_t page_, stride_, bytes_;
  char* base_;
};

// Stack sets outlive launches: mapping and protecting 1024 stacks is not free.
std::mutex g_stack_mutex;
std::vector<std::unique_ptr<StackSet>> g_free_stacks;

std::unique_ptr<StackSet> take_stacks() {
  std::lock_guard<std::mutex> lock(g_stack_mutex);
  if (g_free_stacks.empty()) return std::make_unique<StackSet>();
  auto s = std::move(g_free_stacks.back());
  g_free_stacks.pop_back();
  return s;
}
void give_stacks(std::unique_ptr<StackSet> s) {
  std::lock_guard<std::mutex> lock(g_stack_mutex);
  g_free_stacks.push_back(std::move(s));
}

enum class FiberState { runnable, at_barrier, at_named, at_mbarrier, at_warp, done, failed };

struct WarpRecord {
  Collective kind;
  unsigned mask;
  unsigned arrived;
  unsigned predicates;
  int readers;
  const char* file;
  int line;
  unsigned char values[32][kExchangeBytes];
  unsigned char result[32][kExchangeBytes];
  bool result_ready;
};

// A cp.async in flight: the source bytes are read when it is issued and land in
// shared memory only when a cp.async.wait covers its group, so a kernel that reads
// the destination too early sees the old contents (the poison), as it may on a GPU.
struct AsyncCopy {
  void* dst;
  int bytes;
  int group;
  bool landed;      // already (VGGKERN_EMU_CP_ASYNC=eager); still in flight for races until the wait
  const char* file;
  int line;
  unsigned char data[16];
};

// What an asynchronous operation's shared-memory reads are checked against when they run,
// at its wait (race_async_read): the race clock at its issue, its barrier interval's start,
// and where named barriers are in use its warp's clocks at the issue.
struct IssueClocks {
  uint64_t issued, interval;
  std::vector<uint64_t> known;
};

// An asynchronous tensor-core operation (wgmma) in flight: queued by the thread that
// issued it and run when a wait covers its group, reading shared memory then.
struct AsyncOp {
  AsyncOpFn run;
  int group;
  IssueClocks clocks;
  unsigned char data[kAsyncOpBytes];
};

// A tensor store (cp.async.bulk.tensor ... global.shared::cta) in flight: queued by the
// thread that issued it, in its open bulk group, and run (shared memory read, global memory
// written) when a wait covers its group: the latest the GPU may read the box, so a box
// rewritten before the wait is reported (a race) and stored as rewritten.
struct TensorStore {
  const void* src;
  TensorMap map;
  int32_t coords[2];
  int group;
  IssueClocks clocks;
  const char* file;
  int line;
};

// A named barrier (bar.sync / bar.arrive): its instance in progress (threads 0: none), the
// warps that arrived at it and those of them that wait, and the join of the arrivals' clocks.
struct NamedBarrier {
  int threads = 0, arrived = 0;
  uint32_t warps = 0, syncing = 0;
  uint64_t completed = 0;  // instances completed so far
  const char* file = nullptr;  // the instance's first arrival
  int line = 0;
  std::vector<uint64_t> known;
  std::vector<unsigned> waiting;  // fibers in bar.sync
};

// An mbarrier (tma_emu.h), by its shared address: the count given at init, the arrivals
// pending and the transaction bytes outstanding in the current phase, the phases completed,
// the join of this phase's arrivals' clocks and of all completed phases' (what a wait
// acquires), and the threads waiting with the parity each waits for.
struct MBarrier {
  uint32_t count = 0;
  int64_t pending = 0, tx = 0;
  uint64_t phases = 0;
  std::vector<uint64_t> known, done;
  std::vector<std::pair<unsigned, uint32_t>> waiting;
  const char* file = nullptr;  // its init
  int line = 0;
  unsigned init_thread = 0;  // the thread that initialised it, and whether that thread has since run
  bool fenced = false;       // mbar_init_fence() (what the async proxy's completions need)
};

// Global-memory accounting (global_stats.h): a warp's lanes meet at the k-th call of a
// call site (kernel line and path) since the last __syncthreads(). Per thread, the calls
// per site; per warp, the instructions some of its lanes have reached.
struct GlobalSite {
  const char* file;
  int line;
  GlobalPath path;
  uint32_t calls;
};
struct GlobalKey {
  const char* file;
  int line;
  GlobalPath path;
  uint32_t call;
  bool operator==(const GlobalKey& o) const { return file == o.file && line == o.line && path == o.path && call == o.call; }
};
struct GlobalKeyHash {
  size_t operator()(const GlobalKey& k) const {
    return std::hash<const void*>()(k.file) ^ (size_t(k.line) << 20) ^ (size_t(k.path) << 16) ^ (size_t(k.call) << 32);
  }
};
struct GlobalSlot {
  unsigned arrived = 0;
  int active = 0;
  uintptr_t addresses[32];
  int bytes[32];
};

struct Fiber {
  ThreadView view;
  FiberState state;
  void* sp;
  const char* wait_file;
  int wait_line;
  int barrier_result;  // __syncthreads_count's value, set when the barrier releases
  WarpRecord* record;
  std::vector<AsyncCopy> async_copies;
  int async_group;     // the open (not yet committed) cp.async group
  std::vector<AsyncOp> async_ops;
  int async_op_group;  // the open wgmma group
  std::vector<TensorStore> tensor_stores;
  int store_group;  // the open bulk group (tensor stores)
  std::vector<uint32_t> unfenced;  // 16-byte shared granules this thread wrote since its last proxy fence
  uint64_t warpgroup_seq;          // warpgroup instructions executed so far
  WgmmaRegisters wgmma;
  uint32_t access_seq[3];  // cp.async, ld_shared, st_shared calls so far (bank accounting)
  std::vector<GlobalSite> global_sites;  // its calls per global-access site since the last barrier
  uint32_t synced;         // its warp's __syncwarp() count when it last passed one (races)
  int named_id;            // the named barrier it waits at (state at_named)
  uint32_t mbarrier;       // the mbarrier it waits at (state at_mbarrier)
#if !VK_EMU_ASM_SWITCH
  ucontext_t ctx;
#endif
};

// The lanes of one warp-wide shared access (each lane's k-th cp.async, ld_shared or
// st_shared), gathered for bank accounting.
struct AccessSlot {
  unsigned arrived = 0;
  uintptr_t addresses[32] = {};
  int bytes[32] = {};
};

// A warpgroup's instructions that not all of its threads have executed yet, oldest
// first (the log's entry k is instruction base + k of every thread of the warpgroup).
struct WarpgroupEntry {
  const char* name;
  const char* file;
  int line;
  unsigned first_thread;  // linear index of the thread that executed it first
  unsigned seen;          // threads that executed it
  size_t bytes;
  unsigned char record[kWarpgroupRecordBytes];
};
struct WarpgroupLog {
  std::deque<WarpgroupEntry> entries;
  uint64_t base = 0;
};

struct SharedAlloc {
  const void* tag;
  size_t offset;
  size_t bytes;
};

// Race detection (what compute-sanitizer's racecheck reports on a GPU, on the CPU): per
// 4-byte word of shared memory, its last write and its reads since the barrier interval
// began, each with the race clock's tick, the thread, the warp's __syncwarp() count then
// and the source line. Zero bytes: never accessed (calloc'ed).
struct SharedWord {
  uint64_t write_tick, read_tick;
  const char* write_file;
  const char* read_file;  // the last read's
  const char* copy_file;  // of the cp.async into it in flight, if any
  int32_t write_line, read_line, copy_line;
  uint32_t write_sync, read_sync;  // reads: the highest
  uint16_t writer, reader;         // reader: kSeveralReaders once two threads read in the interval
  uint16_t last_reader, read_warp; // read_warp: kSeveralReaders once two warps did
  uint16_t copier, copies;         // cp.async into it issued and not yet waited for: by whom, how many
};
constexpr uint16_t kSeveralReaders = 0xffff;
constexpr const char* kNoBarrier =
    "with no barrier between (__syncthreads(), a named barrier (bar.sync after the other's warp arrived), an "
    "mbarrier (a wait for a phase the other's arrival or tensor load completed), or __syncwarp() within a warp)";
constexpr const char* kCopyInFlight =
    "still in flight: a cp.async's destination may not be touched, even by its own thread, between its issue and "
    "the issuing thread's wait (and by other threads until a barrier after that)";

std::string coord(const uint3& c) {
  return "(" + std::to_string(c.x) + "," + std::to_string(c.y) + "," + std::to_string(c.z) + ")";
}
std::string site(const char* file, int line) {
  const char* slash = file ? std::strrchr(file, '/') : nullptr;
  return std::string(slash ? slash + 1 : (file ? file : "?")) + ":" + std::to_string(line);
}
std::string hex_address(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}
std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Runs blocks, one at a time, on the OS thread that owns it.
class Worker {
 public:
  Worker(const LaunchParams& p, FunctionRef body)
      : params_(p), body_(body), stacks_(take_stacks()), shared_(static_cast<unsigned char*>(std::aligned_alloc(1024, kMaxSharedBytesPerBlock + 4096))) {
    nthreads_ = p.block.x * p.block.y * p.block.z;
    fibers_.resize(nthreads_);
    for (unsigned i = 0; i < nthreads_; ++i) {
      fibers_[i].view.linear = i;
      fibers_[i].view.thread_idx = uint3{i % p.block.x, (i / p.block.x) % p.block.y, i / (p.block.x * p.block.y)};
    }
    warps_.resize((nthreads_ + 31) / 32);
    exited_.resize(warps_.size());
    warp_syncs_.resize(warps_.size());
    if (!words_) throw std::runtime_error("vggkern emulator: cannot allocate the shared-memory race records");
    warpgroups_.resize((nthreads_ + 127) / 128);
    nwarps_ = static_cast<unsigned>(warps_.size());
    known_.assign(size_t(nwarps_) * nwarps_, 0);
    warp_reads_.reset(static_cast<uint64_t*>(std::calloc(size_t(nwarps_) * kWords, sizeof(uint64_t))));
    if (!warp_reads_) throw std::runtime_error("vggkern emulator: cannot allocate the shared-memory race records");
    absent_.assign(warps_.size(), 0u);
    if (nthreads_ % 32) absent_.back() = ~0u << (nthreads_ % 32);
    for (auto& slots : access_slots_) slots.resize(warps_.size());
    global_slots_.resize(warps_.size());
    block_.block_dim = p.block;
    block_.grid_dim = p.grid;
    runnable_.reserve(nthreads_);
    running_.reserve(nthreads_);
  }
  ~Worker() {
    give_stacks(std::move(stacks_));
    for (auto& w : warps_)
      for (WarpRecord* r : w) delete r;
    for (WarpRecord* r : free_records_) delete r;
  }

  void run_block(uint3 block_idx);

  // ---- called from fibers (through the functions below the class) ----
  int block_barrier(int predicate, const char* file, int line);
  void named_barrier(int id, int threads, bool wait, const char* file, int line);
  void mbarrier_init(const void* bar, uint32_t count, const char* file, int line);
  void mbarrier_init_fence();
  void mbarrier_arrive(const void* bar, uint32_t expect_tx, const char* file, int line);
  void mbarrier_wait(const void* bar, uint32_t parity, const char* file, int line);
  void tensor_store(const void* src, const TensorMap& map, const int32_t* coords, const char* file, int line);
  void tensor_store_commit() { ++current_->store_group; }
  void tensor_store_wait();
  void run_tensor_store(const TensorStore& st);
  // A tensor load's or store's box in shared memory: checked (in shared memory, aligned,
  // rows the swizzle's width), and its bytes; shared address in *a0.
  size_t check_box(const void* smem, const TensorMap& m, size_t rows, const char* what, uint32_t* a0, const char* file,
                   int line);
  void tensor_load(void* dst, const TensorMap& map, const int32_t* coords, const int32_t* offsets, const void* bar,
                   const char* file, int line);
  Exchange warp_exchange(Collective kind, unsigned mask, const void* value, size_t bytes, int predicate,
                         const char* file, int line);
  bool try_complete(unsigned warp, WarpRecord* r, unsigned self_lane);
  void warp_exchange_done(WarpRecord* r);
  void* shared_static(const void* tag, size_t bytes, size_t align, const char* file, int line);
  void* shared_dynamic() { return params_.dynamic_smem_bytes ? shared_.get() : nullptr; }
  bool in_shared(const void* p, size_t bytes) const {
    const auto* c = static_cast<const unsigned char*>(p);
    return c >= shared_.get() && c + bytes <= shared_.get() + kMaxSharedBytesPerBlock;
  }
  void async_copy(void* dst, const void* src, int bytes, int src_bytes, const char* file, int line);
  void async_copy_commit() { ++current_->async_group; }
  void async_copy_wait(int pending_groups_left);
  uint32_t shared_address(const void* p, const char* file, int line) {
    if (!in_shared(p, 1)) fail("address is not in this block's shared memory", file, line);
    return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - shared_.get());
  }
  const unsigned char* shared_at(uint32_t address, size_t bytes, const char* file, int line) {
    if (size_t(address) + bytes > kMaxSharedBytesPerBlock)
      fail("shared address " + std::to_string(address) + " is outside this block's shared memory", file, line);
    return shared_.get() + address;
  }
  void async_op_enqueue(AsyncOpFn run, const void* op, size_t bytes, const char* file, int line) {
    if (bytes > kAsyncOpBytes) fail("asynchronous operation record too large", file, line);
    AsyncOp a{run, current_->async_op_group, issue_clocks(), {}};
    std::memcpy(a.data, op, bytes);
    current_->async_ops.push_back(a);
  }
  void async_op_commit() { ++current_->async_op_group; }
  // The clocks an asynchronous operation issued now carries to its wait, and, there, the
  // ones its reads are checked against (the op_* members; nullptr: none running).
  IssueClocks issue_clocks() {
    IssueClocks c{++tick_, interval_, {}};
    if (named_used_) {
      const uint64_t* row = known_row(current_->view.linear >> 5);
      c.known.assign(row, row + nwarps_);
    }
    return c;
  }
  void running_op(const IssueClocks* c) {
    if (c != nullptr) op_issued_ = c->issued, op_interval_ = c->interval;
    op_known_ = c != nullptr ? &c->known : nullptr;
  }
  void async_op_wait(int pending_groups_left);
  // Generic-proxy writes not yet fenced (simt_emu.h): per 16-byte granule, how many.
  void note_generic_write(const void* p, size_t bytes) {
    const size_t first = static_cast<size_t>(static_cast<const unsigned char*>(p) - shared_.get()) / 16;
    const size_t last = (static_cast<size_t>(static_cast<const unsigned char*>(p) - shared_.get()) + bytes - 1) / 16;
    for (size_t g = first; g <= last; ++g) {
      ++unfenced_[g];
      current_->unfenced.push_back(static_cast<uint32_t>(g));
    }
  }
  void fence_proxy_async() {
    for (uint32_t g : current_->unfenced) --unfenced_[g];
    current_->unfenced.clear();
  }
  void check_fenced(uint32_t address, size_t bytes, const char* reader, const char* file, int line) {
    shared_at(address, bytes, file, line);
    for (size_t g = address / 16; g <= (address + bytes - 1) / 16; ++g)
      if (unfenced_[g] != 0)
        fail(std::string("an asynchronous-proxy read (") + reader + ") of shared address " + std::to_string(address) +
                 ", written (cp.async or st_shared) by a thread that has not since executed fence.proxy.async: "
                 "a missing fence_proxy_async() before the barrier, or a write into an operand that an unwaited "
                 "wgmma still reads",
             file, line);
  }
  void async_proxy_read(uint32_t address, size_t bytes, const char* file, int line) {
    check_fenced(address, bytes, "wgmma", file, line);
    race_async_read(address, bytes, "this thread's wgmma reads", "wgmma", file, line);
  }
  void warpgroup_instruction(const char* name, const void* record, size_t bytes, const char* file, int line);
  WgmmaRegisters& wgmma_registers() { return current_->wgmma; }
  void note_shared_access(SharedPath path, const void* p, int bytes, const char* file, int line);
  void flush_access_slot(SharedPath path, const AccessSlot& s);
  void note_global_access(GlobalPath path, const void* p, int bytes, bool active, const char* file, int line);
  void flush_global_slots();
  void count_global(GlobalPath path, const GlobalSlot& s) {
    global_counts_[path].add(global_access_counts(s.addresses, s.bytes, s.active));
  }
  const GlobalSectorStats& global_counts() const { return global_counts_; }
  // Races between threads on shared memory (see SharedWord): a read, a write, a cp.async
  // issued (checked as a write; its bytes untouchable until the wait) and waited for (its
  // write), a wgmma's read (async proxy).
  void race_read(const void* p, size_t bytes, const char* file, int line);
  void race_write(const void* p, size_t bytes, const char* file, int line);
  void race_copy_issued(const void* p, size_t bytes, const char* file, int line);
  void race_copy_waited(const AsyncCopy& c);
  void race_async_read(uint32_t address, size_t bytes, const char* reads, const char* op, const char* file, int line);
  [[noreturn]] void fail(const std::string& what, const char* file, int line);

  static void fiber_main();

 private:
  void yield_to_scheduler(Fiber* f);
  void wake(unsigned i) {
    fibers_[i].state = FiberState::runnable;
    runnable_.push_back(i);
  }
  std::string where() const;
  std::string deadlock_report() const;
  void check_canaries() const;
  bool ordered(uint64_t tick, unsigned other, uint32_t sync) const;
  bool reads_ordered(const SharedWord& w, size_t word) const;
  uint64_t arrive_named(int id, int threads, bool wait, const char* file, int line);
  uint32_t mbarrier_address(const void* bar, const char* file, int line);  // its shared address, checked
  MBarrier& mbarrier_at(const void* bar, uint32_t* address, const char* file, int line);
  void mbarrier_progress(MBarrier& b, const char* file, int line);
  uint64_t* known_row(unsigned warp) { return known_.data() + size_t(warp) * nwarps_; }
  const uint64_t* known_row(unsigned warp) const { return known_.data() + size_t(warp) * nwarps_; }
  // Does this thread's warp know (through named barriers) of warp `warp`'s accesses up to `tick`?
  bool knows(unsigned warp, uint64_t tick) const {
    return named_used_ && known_row(current_->view.linear >> 5)[warp] >= tick;
  }
  std::string thread_name(unsigned linear) const { return "thread " + coord(fibers_[linear].view.thread_idx); }
  std::string readers(const SharedWord& w) const;
  void record_read(SharedWord& w, size_t word, uint64_t now, const char* file, int line);
  void check_write(const void* p, size_t bytes, const char* now, const char* file, int line);
  void check_no_copy(const SharedWord& w, size_t word, const char* now, const char* file, int line);
  void check_after_write(const SharedWord& w, size_t word, const char* now, const char* file, int line);
  void record_write(size_t first, size_t n, const char* file, int line);
  [[noreturn]] void race(const std::string& now, size_t word, const std::string& then, const char* then_file,
                         int then_line, const char* file, int line, const std::string& why = kNoBarrier);
  // The words [first, first + n) that `bytes` at p cover.
  size_t words_of(const void* p, size_t bytes, size_t* n) const {
    const size_t offset = static_cast<size_t>(static_cast<const unsigned char*>(p) - shared_.get());
    *n = (offset + bytes - 1) / 4 - offset / 4 + 1;
    return offset / 4;
  }

  LaunchParams params_;
  FunctionRef body_;
  std::unique_ptr<StackSet> stacks_;
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, FreeDeleter> shared_;  // 1024-byte aligned, as wgmma's swizzles need
  std::vector<uint32_t> unfenced_ = std::vector<uint32_t>(kMaxSharedBytesPerBlock / 16 + 1);
  // Races: the words' records (pages zeroed by the OS as first touched), the clock (one
  // tick per access; monotonic over this worker's blocks, so earlier blocks' records are
  // simply older than the interval), the tick at which the current barrier interval
  // began, each warp's __syncwarp() count, and the issue of the async op running now.
  static constexpr size_t kWords = kMaxSharedBytesPerBlock / 4;
  std::unique_ptr<SharedWord, FreeDeleter> words_{static_cast<SharedWord*>(std::calloc(kWords, sizeof(SharedWord)))};
  uint64_t tick_ = 0, interval_ = 0;
  std::vector<uint32_t> warp_syncs_;
  uint64_t op_issued_ = 0, op_interval_ = 0;
  const std::vector<uint64_t>* op_known_ = nullptr;  // the async op running now: its issuer's clocks
  // Named barriers (ids 1..15) and the order they make, as per-warp clocks: known_[s][w],
  // the race clock up to which warp w's accesses are ordered before warp s's from now on
  // (a bar.sync that completed after w arrived at it, or through a chain of such). Clocks
  // from an earlier block are older than this block's interval, so they never order its
  // accesses. warp_reads_[w][word]: the tick of warp w's last read of the word (<< 6) and
  // the lane that made it (bits 0-4; bit 5: more than one lane read in the interval). Both are
  // consulted only where the block used a named barrier (named_used_); without one the
  // order is __syncthreads() and __syncwarp() alone, as before.
  unsigned nwarps_ = 0;
  NamedBarrier named_[16];
  bool named_used_ = false;
  std::vector<uint64_t> known_;
  std::unique_ptr<uint64_t, FreeDeleter> warp_reads_;
  // mbarriers, by shared address (named_used_ is set by them too: they order by the same clocks).
  std::unordered_map<uint32_t, MBarrier> mbarriers_;
  size_t shared_used_ = 0;
  std::vector<SharedAlloc> shared_allocs_;

  unsigned nthreads_;
  std::vector<Fiber> fibers_;
  std::vector<unsigned> runnable_, running_;
  unsigned live_ = 0;
  Fiber* current_ = nullptr;
  void* scheduler_sp_ = nullptr;
#if !VK_EMU_ASM_SWITCH
  ucontext_t scheduler_ctx_;
#endif
  BlockView block_;

  unsigned barrier_arrived_ = 0;
  int barrier_count_ = 0;
  const char* barrier_file_ = nullptr;
  int barrier_line_ = 0;

  std::vector<std::vector<WarpRecord*>> warps_;  // pending collectives per warp
  std::vector<unsigned> exited_;                 // lanes that returned, per warp
  std::vector<unsigned> absent_;                 // lanes past the block's last thread, per warp
  // Per path (cp.async, ld_shared, st_shared), per warp, by sequence number.
  std::vector<std::unordered_map<uint32_t, AccessSlot>> access_slots_[3];
  // Global accesses, per warp, by (site, call); see GlobalSite.
  std::vector<std::unordered_map<GlobalKey, GlobalSlot, GlobalKeyHash>> global_slots_;
  GlobalSectorStats global_counts_;  // this worker's part of the launch's
  std::vector<WarpRecord*> free_records_;
  std::vector<WarpgroupLog> warpgroups_;

  bool failed_ = false;
  const bool eager_copies_ = cp_async_lands_eagerly();
  std::string error_;
};

__thread Worker* t_worker = nullptr;

std::string Worker::where() const {
  std::string s = "kernel '" + std::string(params_.kernel_name) + "' block " + coord(block_.block_idx);
  if (current_) s += " thread " + coord(current_->view.thread_idx);
  return s;
}

void Worker::fail(const std::string& what, const char* file, int line) {
  failed_ = true;
  error_ = "vggkern emulator: " + where() + (file ? " at " + site(file, line) : std::string()) + ": " + what;
  Fiber* f = current_;
  f->state = FiberState::failed;
  yield_to_scheduler(f);
  std::abort();  // a failed fiber is never resumed
}

void Worker::fiber_main() {
  Worker* w = t_worker;
  Fiber* f = w->current_;
  w->body_();
  w->async_copy_wait(-1);  // copies still in flight land before the thread is gone
  if (!f->async_ops.empty()) w->fail("the thread exits with wgmma operations it never waited for", nullptr, 0);
  if (!f->tensor_stores.empty())
    w->fail("the thread exits with tensor stores it never waited for (tma_store_commit() and tma_store_wait(): the "
            "block's shared memory goes with it, and the stores may not have read it yet)",
            f->tensor_stores.front().file, f->tensor_stores.front().line);
  f->state = FiberState::done;
  --w->live_;
  // Lanes that wait for this one in a warp collective no longer need to.
  const unsigned warp = f->view.linear >> 5;
  w->exited_[warp] |= 1u << (f->view.linear & 31u);
  const std::vector<WarpRecord*> pending = w->warps_[warp];
  for (WarpRecord* r : pending) w->try_complete(warp, r, 32);
  w->yield_to_scheduler(f);
  std::abort();  // a finished fiber is never resumed
}

#if VK_EMU_ASM_SWITCH
void prepare_fiber(Fiber& f, char* stack_top, char*) {
  auto* sp = reinterpret_cast<uint64_t*>(stack_top);
  *--sp = 0;                                                    // fiber_main's (unused) return address
  *--sp = reinterpret_cast<uint64_t>(&Worker::fiber_main);      // popped by vk_emu_switch's ret
  for (int i = 0; i < 6; ++i) *--sp = 0;                        // rbp rbx r12 r13 r14 r15
  f.sp = sp;
}
void Worker::yield_to_scheduler(Fiber* f) { vk_emu_switch(&f->sp, scheduler_sp_); }
#else
void prepare_fiber(Fiber& f, char* stack_top, char* stack_bottom) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = stack_bottom;
  f.ctx.uc_stack.ss_size = static_cast<size_t>(stack_top - stack_bottom);
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, &Worker::fiber_main, 0);
}
void Worker::yield_to_scheduler(Fiber* f) { swapcontext(&f->ctx, &scheduler_ctx_); }
#endif

void Worker::run_block(uint3 block_idx) {
  block_.block_idx = block_idx;
  t_worker = this;
  t_block = &block_;
  // Poison shared memory: the dynamic part now, static allocations when declared.
  shared_allocs_.clear();
  std::memset(shared_.get(), kSharedPoison, params_.dynamic_smem_bytes);
  std::memset(shared_.get() + params_.dynamic_smem_bytes, kSharedCanary, kSharedCanaryBytes);
  shared_used_ = (params_.dynamic_smem_bytes + kSharedCanaryBytes + 15) & ~size_t(15);

  barrier_arrived_ = 0;
  barrier_count_ = 0;
  for (NamedBarrier& b : named_) b = NamedBarrier();
  mbarriers_.clear();
  named_used_ = false;
  interval_ = ++tick_;  // every record of an earlier block is older than this block's accesses
  std::fill(warp_syncs_.begin(), warp_syncs_.end(), 0u);
  for (auto& w : warps_) {
    for (WarpRecord* r : w) free_records_.push_back(r);
    w.clear();
  }
  std::fill(exited_.begin(), exited_.end(), 0u);
  for (WarpgroupLog& log : warpgroups_) log = WarpgroupLog();
  std::fill(unfenced_.begin(), unfenced_.end(), 0u);
  runnable_.clear();
  for (unsigned i = 0; i < nthreads_; ++i) {
    Fiber& f = fibers_[i];
    f.state = FiberState::runnable;
    f.record = nullptr;
    f.async_copies.clear();
    f.async_group = 0;
    f.async_ops.clear();
    f.async_op_group = 0;
    f.tensor_stores.clear();
    f.store_group = 0;
    f.unfenced.clear();
    f.warpgroup_seq = 0;
    f.wgmma = WgmmaRegisters();
    std::fill(std::begin(f.access_seq), std::end(f.access_seq), 0u);
    f.global_sites.clear();
    f.synced = 0;
    f.named_id = 0;
    f.mbarrier = 0;
    prepare_fiber(f, stacks_->top(i), stacks_->bottom(i));
    runnable_.push_back(i);
  }
  live_ = nthreads_;

  while (!runnable_.empty()) {
    running_.swap(runnable_);
    runnable_.clear();
    for (unsigned i : running_) {
      Fiber* f = &fibers_[i];
      current_ = f;
      t_thread = &f->view;
#if VK_EMU_ASM_SWITCH
      vk_emu_switch(&scheduler_sp_, f->sp);
#else
      swapcontext(&scheduler_ctx_, &f->ctx);
#endif
      if (failed_) {
        current_ = nullptr;
        throw std::runtime_error(error_);
      }
    }
  }
  current_ = nullptr;
  t_thread = nullptr;
  if (live_ > 0) throw std::runtime_error(deadlock_report());
  check_canaries();
  for (int id = 1; id < 16; ++id)
    if (named_[id].threads != 0)
      throw std::runtime_error("vggkern emulator: kernel '" + std::string(params_.kernel_name) + "' block " +
                               coord(block_.block_idx) + ": the block ends with named barrier " + std::to_string(id) +
                               " (first arrival at " + site(named_[id].file, named_[id].line) + ") at " +
                               std::to_string(named_[id].arrived) + " of its " + std::to_string(named_[id].threads) +
                               " threads: every arrival must be matched (a warp that arrives once too often)");
  for (const auto& [address, b] : mbarriers_)
    if (b.tx != 0)
      throw std::runtime_error("vggkern emulator: kernel '" + std::string(params_.kernel_name) + "' block " +
                               coord(block_.block_idx) + ": the block ends with the mbarrier at shared address " +
                               std::to_string(address) + " (initialised at " + site(b.file, b.line) + ") " +
                               (b.tx > 0 ? "expecting " + std::to_string(b.tx) + " bytes of tensor loads that never came"
                                         : "holding " + std::to_string(-b.tx) + " bytes of tensor loads no arrival expected") +
                               ": every load's bytes must be announced (mbarrier.arrive.expect_tx) and waited for");
  for (size_t g = 0; g < warpgroups_.size(); ++g) {
    if (warpgroups_[g].entries.empty()) continue;
    const WarpgroupEntry& e = warpgroups_[g].entries.front();
    throw std::runtime_error("vggkern emulator: kernel '" + std::string(params_.kernel_name) + "' block " +
                             coord(block_.block_idx) + ": " + e.name + " at " + site(e.file, e.line) + " was executed by " +
                             std::to_string(e.seen) + " of the 128 threads of warpgroup " + std::to_string(g) +
                             " (first: thread " + coord(fibers_[e.first_thread].view.thread_idx) +
                             "): every thread of a warpgroup must execute each wgmma instruction (.sync.aligned)");
  }
  flush_global_slots();
  for (int path = 0; path < 3; ++path) {  // accesses that some lanes skipped
    for (auto& slots : access_slots_[path]) {
      for (const auto& kv : slots) flush_access_slot(static_cast<SharedPath>(path + 1), kv.second);
      slots.clear();
    }
  }
}

int Worker::block_barrier(int predicate, const char* file, int line) {
  Fiber* f = current_;
  if (barrier_arrived_ == 0) {
    barrier_file_ = file;
    barrier_line_ = line;
    barrier_count_ = 0;
  } else if (line != barrier_line_ || std::strcmp(file, barrier_file_) != 0) {
    fail("threads of one block wait at different __syncthreads() calls (" + site(barrier_file_, barrier_line_) +
             " and " + site(file, line) + "); every thread must reach the same barrier",
         file, line);
  }
  barrier_count_ += predicate;
  if (++barrier_arrived_ == nthreads_) {
    barrier_arrived_ = 0;
    interval_ = ++tick_;  // accesses before the barrier are ordered before those after
    flush_global_slots();
    for (unsigned i = 0; i < nthreads_; ++i) {
      if (fibers_[i].state != FiberState::at_barrier) continue;
      fibers_[i].barrier_result = barrier_count_;
      wake(i);
    }
    return barrier_count_;
  }
  f->state = FiberState::at_barrier;
  f->wait_file = file;
  f->wait_line = line;
  yield_to_scheduler(f);
  return f->barrier_result;
}

// bar.sync / bar.arrive: the warp's lanes meet first (the whole warp arrives, as on the
// GPU, where the barrier counts warps), then the first lane to go on counts the warp's 32
// threads at the instance in progress; the lanes of a bar.sync then wait for it to complete.
void Worker::named_barrier(int id, int threads, bool wait, const char* file, int line) {
  if (id < 1 || id > 15)
    fail("named barrier id " + std::to_string(id) + " outside 1..15 (0 is __syncthreads()'s)", file, line);
  const int block_threads = static_cast<int>(nwarps_ * 32);
  if (threads <= 0 || threads % 32 != 0 || threads > block_threads)
    fail("named barrier " + std::to_string(id) + " of " + std::to_string(threads) +
             " threads: a positive multiple of 32, at most the block's " + std::to_string(block_threads),
         file, line);
  const int op[3] = {id, threads, wait ? 1 : 0};
  const Exchange ex = warp_exchange(Collective::named_barrier, 0xffffffffu, op, sizeof op, 0, file, line);
  for (unsigned l = 0; l < 32; ++l)
    if (((ex.arrived >> l) & 1u) && std::memcmp(ex.values[l], op, sizeof op) != 0) {
      warp_exchange_done(static_cast<WarpRecord*>(ex.handle));
      fail("lanes of one warp meet at a named barrier with different ids, counts or kinds (bar.sync, bar.arrive)",
           file, line);
    }
  uint64_t instance;
  if (!*ex.shared_ready) {
    instance = arrive_named(id, threads, wait, file, line);
    std::memcpy(*ex.shared_result, &instance, sizeof instance);
    *ex.shared_ready = true;
  } else {
    std::memcpy(&instance, *ex.shared_result, sizeof instance);
  }
  warp_exchange_done(static_cast<WarpRecord*>(ex.handle));
  if (!wait || named_[id].completed > instance) return;
  Fiber* f = current_;
  f->state = FiberState::at_named;
  f->named_id = id;
  f->wait_file = file;
  f->wait_line = line;
  named_[id].waiting.push_back(f->view.linear);
  yield_to_scheduler(f);
}

// Counts the current warp's arrival at barrier id; returns the instance's number.
uint64_t Worker::arrive_named(int id, int threads, bool wait, const char* file, int line) {
  NamedBarrier& b = named_[id];
  const unsigned warp = current_->view.linear >> 5;
  if (b.threads == 0) {
    b.threads = threads;
    b.arrived = 0;
    b.warps = b.syncing = 0;
    b.file = file;
    b.line = line;
    b.known.assign(nwarps_, 0);
  } else if (b.threads != threads) {
    fail("named barrier " + std::to_string(id) + ": this warp counts " + std::to_string(threads) +
             " threads, the instance in progress (first arrival at " + site(b.file, b.line) + ") " +
             std::to_string(b.threads),
         file, line);
  }
  if ((b.warps >> warp) & 1u)
    fail("warp " + std::to_string(warp) + " arrives twice at one instance of named barrier " + std::to_string(id) +
             " (first arrival at " + site(b.file, b.line) + "): on a GPU its second arrival would count as another "
             "warp's and complete the barrier early",
         file, line);
  named_used_ = true;
  b.warps |= 1u << warp;
  if (wait) b.syncing |= 1u << warp;
  b.arrived += 32;
  const uint64_t* row = known_row(warp);
  for (unsigned w = 0; w < nwarps_; ++w) b.known[w] = std::max(b.known[w], row[w]);
  b.known[warp] = ++tick_;  // every lane's accesses so far (the lanes met first)
  const uint64_t instance = b.completed;
  if (b.arrived == b.threads) {
    for (unsigned s = 0; s < nwarps_; ++s) {
      if (!((b.syncing >> s) & 1u)) continue;
      uint64_t* known = known_row(s);
      for (unsigned w = 0; w < nwarps_; ++w) known[w] = std::max(known[w], b.known[w]);
    }
    ++b.completed;
    b.threads = 0;
    for (unsigned i : b.waiting) wake(i);
    b.waiting.clear();
  }
  return instance;
}

// ---- mbarriers and tensor loads (tma_emu.h) -------------------------------------------

uint32_t Worker::mbarrier_address(const void* bar, const char* file, int line) {
  const uint32_t a = shared_address(bar, file, line);
  if (a % 8 != 0) fail("an mbarrier is an 8-byte aligned word of shared memory; shared address " + std::to_string(a), file, line);
  return a;
}

MBarrier& Worker::mbarrier_at(const void* bar, uint32_t* address, const char* file, int line) {
  const uint32_t a = mbarrier_address(bar, file, line);
  const auto it = mbarriers_.find(a);
  if (it == mbarriers_.end())
    fail("the mbarrier at shared address " + std::to_string(a) + " is used before its mbarrier.init", file, line);
  if (address) *address = a;
  return it->second;
}

void Worker::mbarrier_init(const void* bar, uint32_t count, const char* file, int line) {
  const uint32_t a = mbarrier_address(bar, file, line);
  if (count < 1 || count > (1u << 20) - 1)
    fail("mbarrier.init count " + std::to_string(count) + " outside [1, 2^20 - 1]", file, line);
  const auto [it, fresh] = mbarriers_.try_emplace(a);
  if (!fresh)
    fail("the mbarrier at shared address " + std::to_string(a) + " is initialised twice (first at " +
             site(it->second.file, it->second.line) + ")",
         file, line);
  MBarrier& b = it->second;
  b.count = count;
  b.pending = count;
  b.known.assign(nwarps_, 0);
  b.done.assign(nwarps_, 0);
  b.file = file;
  b.line = line;
  b.init_thread = current_->view.linear;
  named_used_ = true;  // its order is kept by the per-warp clocks
}

// fence.mbarrier_init + fence.proxy.async (kernels/tma.cuh: mbar_init_fence): the mbarriers
// this thread initialised become visible to the async proxy, whose tensor loads complete
// their bytes on them.
void Worker::mbarrier_init_fence() {
  for (auto& [address, b] : mbarriers_)
    if (b.init_thread == current_->view.linear) b.fenced = true;
}

// Completes the phase once nothing is pending: the arrivals' clocks become what a wait
// acquires, and the threads waiting for this phase's parity go on.
void Worker::mbarrier_progress(MBarrier& b, const char* file, int line) {
  if (b.pending != 0) return;
  if (b.tx < 0)
    fail("tensor loads completed " + std::to_string(-b.tx) + " more bytes on an mbarrier than its arrivals expected "
         "(mbarrier.arrive.expect_tx)", file, line);
  if (b.tx > 0) return;
  ++b.phases;
  b.pending = b.count;
  for (unsigned w = 0; w < nwarps_; ++w) b.done[w] = std::max(b.done[w], b.known[w]);
  std::fill(b.known.begin(), b.known.end(), 0);
  auto& q = b.waiting;
  for (auto& [fiber, parity] : q)
    if ((b.phases & 1u) != parity) wake(fiber);
  q.erase(std::remove_if(q.begin(), q.end(), [&](const auto& e) { return (b.phases & 1u) != e.second; }), q.end());
}

void Worker::mbarrier_arrive(const void* bar, uint32_t expect_tx, const char* file, int line) {
  MBarrier& b = mbarrier_at(bar, nullptr, file, line);
  if (b.pending == 0)
    fail("an arrival at an mbarrier whose phase has all its " + std::to_string(b.count) +
             " arrivals (and waits for its tensor loads' bytes): more arrivals than its count",
         file, line);
  b.tx += expect_tx;
  --b.pending;
  const unsigned warp = current_->view.linear >> 5;
  const uint64_t* row = known_row(warp);
  for (unsigned w = 0; w < nwarps_; ++w) b.known[w] = std::max(b.known[w], row[w]);
  b.known[warp] = ++tick_;  // this thread's accesses so far (kept per warp, as named barriers' are)
  mbarrier_progress(b, file, line);
}

void Worker::mbarrier_wait(const void* bar, uint32_t parity, const char* file, int line) {
  uint32_t address;
  MBarrier* b = &mbarrier_at(bar, &address, file, line);
  if (parity > 1) fail("mbarrier wait parity " + std::to_string(parity) + ": 0 or 1", file, line);
  if ((b->phases & 1u) == parity) {  // that phase is still in progress: wait for it
    Fiber* f = current_;
    f->state = FiberState::at_mbarrier;
    f->mbarrier = address;
    f->wait_file = file;
    f->wait_line = line;
    b->waiting.emplace_back(f->view.linear, parity);
    yield_to_scheduler(f);
    b = &mbarrier_at(bar, nullptr, file, line);
  }
  uint64_t* row = known_row(current_->view.linear >> 5);
  for (unsigned w = 0; w < nwarps_; ++w) row[w] = std::max(row[w], b->done[w]);
}

// The swizzled shared address of byte `a` of a box (tma_emu.h: bits 4.. ^= bits 7..).
static uint32_t swizzle_address(uint32_t a, int swizzle) {
  const uint32_t flip = swizzle ? static_cast<uint32_t>(swizzle) / 16 - 1 : 0;
  return a ^ (((a >> 7) & flip) << 4);
}

void Worker::tensor_load(void* dst, const TensorMap& m, const int32_t* coords, const int32_t* offsets, const void* bar,
                         const char* file, int line) {
  MBarrier& b = mbarrier_at(bar, nullptr, file, line);
  const uint32_t row_bytes = m.box[0] * static_cast<uint32_t>(m.elem_bytes);
  std::vector<BoxRow> rows;
  const std::string error = tensor_box(m, coords, offsets, &rows);
  if (!error.empty()) fail(error, file, line);
  uint32_t a0;
  const size_t bytes = check_box(dst, m, rows.size(), "tensor load destination", &a0, file, line);
  check_write(dst, bytes, "this thread's tensor load writes", file, line);
  if (!b.fenced)
    fail("a tensor load completes on an mbarrier (initialised at " + site(b.file, b.line) +
             ") whose initialising thread has not run mbar_init_fence() since (fence.mbarrier_init, "
             "fence.proxy.async): the async proxy may not see the initialisation",
         file, line);
  // Chunk by chunk: 16 bytes gathered (zeros out of bounds), stored at their swizzled address.
  const uint32_t per_chunk = 16 / static_cast<uint32_t>(m.elem_bytes);
  for (size_t i = 0; i < rows.size(); ++i) {
    const BoxRow& r = rows[i];
    for (uint32_t j = 0; j < row_bytes / 16; ++j) {
      unsigned char chunk[16] = {};
      for (uint32_t e = 0; e < per_chunk; ++e) {
        const uint32_t k = j * per_chunk + e;
        if (k >= r.begin && k < r.end)
          std::memcpy(chunk + e * m.elem_bytes, m.base + r.offset + int64_t(k) * m.elem_bytes, size_t(m.elem_bytes));
      }
      const uint32_t a = a0 + static_cast<uint32_t>(i) * row_bytes + 16 * j;
      const uint32_t swizzled = swizzle_address(a, m.swizzle);
      std::memcpy(shared_.get() + swizzled, chunk, 16);
      record_write(swizzled / 4, 4, file, line);
    }
  }
  b.tx -= static_cast<int64_t>(bytes);
  b.known[current_->view.linear >> 5] = ++tick_;  // the load's writes, released to the barrier's waiters
  mbarrier_progress(b, file, line);
}

size_t Worker::check_box(const void* smem, const TensorMap& m, size_t rows, const char* what, uint32_t* a0,
                         const char* file, int line) {
  const uint32_t row_bytes = m.box[0] * static_cast<uint32_t>(m.elem_bytes);
  const size_t bytes = rows * row_bytes;
  const std::string w(what);
  if (!in_shared(smem, bytes)) fail(w + " (" + std::to_string(bytes) + " bytes) is not in shared memory", file, line);
  *a0 = shared_address(smem, file, line);
  if (*a0 % 128 != 0) fail(w + " at shared address " + std::to_string(*a0) + ": not 128-byte aligned", file, line);
  if (row_bytes % 16 != 0) fail(w + ": rows of " + std::to_string(row_bytes) + " bytes, not a multiple of 16", file, line);
  if (m.swizzle != 0 && (row_bytes != static_cast<uint32_t>(m.swizzle) || *a0 % (8 * m.swizzle) != 0))
    fail(w + " with the " + std::to_string(m.swizzle) + "-byte swizzle: emulated for rows of exactly " +
             std::to_string(m.swizzle) + " bytes (got " + std::to_string(row_bytes) + ") at a multiple of " +
             std::to_string(8 * m.swizzle) + " bytes (got shared address " + std::to_string(*a0) + ")",
         file, line);
  return bytes;
}

void Worker::tensor_store(const void* src, const TensorMap& m, const int32_t* coords, const char* file, int line) {
  if (m.mode != TensorMap::Mode::tiled || m.rank != 2) fail("tensor store: emulated for 2-D tile maps", file, line);
  uint32_t a0;
  const size_t bytes = check_box(src, m, m.box[1], "tensor store source", &a0, file, line);
  // Its writers must have fenced (generic -> async proxy) by now, before the barrier that
  // ordered their writes before this issue; the read itself runs at the wait.
  for (uint32_t off = 0; off < bytes; off += 16)
    check_fenced(swizzle_address(a0 + off, m.swizzle), 16, "tensor store", file, line);
  current_->tensor_stores.push_back(
      TensorStore{src, m, {coords[0], coords[1]}, current_->store_group, issue_clocks(), file, line});
}

void Worker::run_tensor_store(const TensorStore& st) {
  const TensorMap& m = st.map;
  const uint32_t row_bytes = m.box[0] * static_cast<uint32_t>(m.elem_bytes);
  std::vector<BoxRow> rows;
  const std::string error = tensor_box(m, st.coords, nullptr, &rows);
  if (!error.empty()) fail(error, st.file, st.line);
  const uint32_t a0 = shared_address(st.src, st.file, st.line);
  running_op(&st.clocks);
  const uint32_t per_chunk = 16 / static_cast<uint32_t>(m.elem_bytes);
  for (size_t i = 0; i < rows.size(); ++i) {
    const BoxRow& r = rows[i];
    for (uint32_t j = 0; j < row_bytes / 16; ++j) {
      const uint32_t a = swizzle_address(a0 + static_cast<uint32_t>(i) * row_bytes + 16 * j, m.swizzle);
      race_async_read(a, 16, "this thread's tensor store reads", "tensor store", st.file, st.line);
      const unsigned char* chunk = shared_at(a, 16, st.file, st.line);
      for (uint32_t e = 0; e < per_chunk; ++e) {
        const uint32_t k = j * per_chunk + e;
        if (k >= r.begin && k < r.end)
          std::memcpy(const_cast<unsigned char*>(m.base) + r.offset + int64_t(k) * m.elem_bytes, chunk + e * m.elem_bytes,
                      size_t(m.elem_bytes));
      }
    }
    if (r.end > r.begin) {  // global sectors: one "instruction" per row of the box that lies inside
      const uintptr_t address = reinterpret_cast<uintptr_t>(m.base + r.offset + int64_t(r.begin) * m.elem_bytes);
      const int row_inside = static_cast<int>((r.end - r.begin) * static_cast<uint32_t>(m.elem_bytes));
      global_counts_[GlobalPath::store].add(global_access_counts(&address, &row_inside, 1));
    }
  }
  running_op(nullptr);
}

void Worker::tensor_store_wait() {
  auto& q = current_->tensor_stores;
  size_t done = 0;
  while (done < q.size() && q[done].group < current_->store_group) run_tensor_store(q[done++]);  // in issue order
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(done));
}

// A warp collective completes once every lane of its mask that has not exited (or
// does not exist, in a partial last warp) has arrived; CUDA asks only the non-exited
// lanes named in the mask to take part.
Exchange Worker::warp_exchange(Collective kind, unsigned mask, const void* value, size_t bytes, int predicate,
                               const char* file, int line) {
  Fiber* f = current_;
  const unsigned lane = f->view.linear & 31u;
  const unsigned warp = f->view.linear >> 5;
  if (!((mask >> lane) & 1u))
    fail("warp collective called with mask " + hex(mask) + " that excludes the calling lane " + std::to_string(lane),
         file, line);

  std::vector<WarpRecord*>& pending = warps_[warp];
  WarpRecord* r = nullptr;
  for (WarpRecord* p : pending)
    if (p->mask == mask) r = p;
  if (r == nullptr) {
    if (free_records_.empty()) free_records_.push_back(new WarpRecord);
    r = free_records_.back();
    free_records_.pop_back();
    r->kind = kind;
    r->mask = mask;
    r->arrived = 0;
    r->predicates = 0;
    r->result_ready = false;
    r->file = file;
    r->line = line;
    pending.push_back(r);
  } else if (r->kind != kind || r->line != line || std::strcmp(r->file, file) != 0) {
    fail("lanes of warp " + std::to_string(warp) + " meet at different warp collectives with the same mask (" +
             site(r->file, r->line) + " and " + site(file, line) + ")",
         file, line);
  }
  if (bytes > kExchangeBytes) fail("warp collective operand of " + std::to_string(bytes) + " bytes is too wide", file, line);
  if (bytes) std::memcpy(r->values[lane], value, bytes);
  if (predicate) r->predicates |= 1u << lane;
  r->arrived |= 1u << lane;
  f->record = r;
  if (!try_complete(warp, r, lane)) {
    f->state = FiberState::at_warp;
    f->wait_file = file;
    f->wait_line = line;
    yield_to_scheduler(f);
  }
  return Exchange{r->values, r->arrived, r->predicates, r, r->result, &r->result_ready};
}

bool Worker::try_complete(unsigned warp, WarpRecord* r, unsigned self_lane) {
  const unsigned lanes = std::min(32u, nthreads_ - warp * 32);
  const unsigned existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
  if (r->arrived != (r->mask & existing & ~exited_[warp])) return false;
  std::vector<WarpRecord*>& pending = warps_[warp];
  pending.erase(std::find(pending.begin(), pending.end(), r));
  r->readers = __builtin_popcount(r->arrived);
  if (r->kind == Collective::syncwarp) {  // orders the lanes' shared accesses (races)
    ++warp_syncs_[warp];
    for (unsigned l = 0; l < 32; ++l)
      if ((r->arrived >> l) & 1u) fibers_[warp * 32 + l].synced = warp_syncs_[warp];
  }
  for (unsigned l = 0; l < 32; ++l)
    if (((r->arrived >> l) & 1u) && l != self_lane) wake(warp * 32 + l);
  return true;
}

void Worker::warp_exchange_done(WarpRecord* r) {
  current_->record = nullptr;
  if (--r->readers == 0) free_records_.push_back(r);
}

void* Worker::shared_static(const void* tag, size_t bytes, size_t align, const char* file, int line) {
  for (const SharedAlloc& a : shared_allocs_)
    if (a.tag == tag) return shared_.get() + a.offset;
  align = std::max<size_t>(align, 16);
  const size_t offset = (shared_used_ + align - 1) & ~(align - 1);
  if (offset + bytes > kMaxSharedBytesPerBlock)
    fail("shared memory of the block exceeds " + std::to_string(kMaxSharedBytesPerBlock) + " bytes", file, line);
  std::memset(shared_.get() + offset, kSharedPoison, bytes);
  std::memset(shared_.get() + offset + bytes, kSharedCanary, kSharedCanaryBytes);
  shared_allocs_.push_back(SharedAlloc{tag, offset, bytes});
  shared_used_ = offset + bytes + kSharedCanaryBytes;
  return shared_.get() + offset;
}

void Worker::async_copy(void* dst, const void* src, int bytes, int src_bytes, const char* file, int line) {
  if (bytes != 4 && bytes != 8 && bytes != 16) fail("cp.async copies 4, 8 or 16 bytes, not " + std::to_string(bytes), file, line);
  if (src_bytes < 0 || src_bytes > bytes) fail("cp.async source size " + std::to_string(src_bytes) + " outside [0, " + std::to_string(bytes) + "]", file, line);
  if (reinterpret_cast<uintptr_t>(dst) % bytes || (src_bytes && reinterpret_cast<uintptr_t>(src) % bytes))
    fail("cp.async of " + std::to_string(bytes) + " bytes needs addresses aligned to " + std::to_string(bytes), file, line);
  if (!in_shared(dst, static_cast<size_t>(bytes)))
    fail("cp.async destination is not in shared memory", file, line);
  race_copy_issued(dst, static_cast<size_t>(bytes), file, line);
  AsyncCopy c{dst, bytes, current_->async_group, eager_copies_, file, line, {}};
  std::memcpy(c.data, src, static_cast<size_t>(src_bytes));  // the rest stays zero: cp.async's zero fill
  if (c.landed) {  // lands now (see runtime.h)
    std::memcpy(dst, c.data, static_cast<size_t>(bytes));
    note_generic_write(dst, static_cast<size_t>(bytes));
  }
  current_->async_copies.push_back(c);

  note_shared_access(SharedPath::cp_async, dst, bytes, file, line);
  note_global_access(GlobalPath::cp_async, src, src_bytes, src_bytes > 0, file, line);
}

// Bank accounting: the warp's lanes meet by sequence number (each lane's k-th access on
// the path), so a warp-wide instruction is the k-th call of every lane of the warp.
void Worker::note_shared_access(SharedPath path, const void* p, int bytes, const char* file, int line) {
  if (!in_shared(p, static_cast<size_t>(bytes))) fail("shared access outside this block's shared memory", file, line);
  // As for global memory (note_global_access): a vector access is aligned to its size, or
  // the GPU faults. Offsets within the block's shared memory decide: the arena's base and
  // every allocation in it are at least 16-byte aligned, as on the GPU.
  const uintptr_t offset = reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(shared_.get());
  if (offset % static_cast<uintptr_t>(std::min(bytes & -bytes, 16)) != 0)
    fail("misaligned shared " + std::string(path == SharedPath::store ? "store" : path == SharedPath::load ? "load" : "cp.async") +
             " of " + std::to_string(bytes) + " bytes at shared offset " + std::to_string(offset) +
             ": a GPU faults (misaligned address)",
         file, line);
  if (path == SharedPath::store) {
    note_generic_write(p, static_cast<size_t>(bytes));
    race_write(p, static_cast<size_t>(bytes), file, line);
  }
  if (path == SharedPath::load) race_read(p, static_cast<size_t>(bytes), file, line);
  const int k = static_cast<int>(path) - 1;  // cp_async, load, store
  const unsigned warp = current_->view.linear >> 5, lane = current_->view.linear & 31u;
  auto& slots = access_slots_[k][warp];
  const auto it = slots.try_emplace(current_->access_seq[k]++).first;
  AccessSlot& s = it->second;
  s.arrived |= 1u << lane;
  s.addresses[lane] = reinterpret_cast<uintptr_t>(p);
  s.bytes[lane] = bytes;
  if ((s.arrived | exited_[warp] | absent_[warp]) == ~0u) {
    flush_access_slot(path, s);
    slots.erase(it);
  }
}

void Worker::note_global_access(GlobalPath path, const void* p, int bytes, bool active, const char* file, int line) {
  // A vector access must be aligned to its size (the largest power of two dividing it; a
  // wider one is made of 16-byte accesses, the widest sm_90 has), or the GPU faults
  // ("misaligned address").
  if (active && reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(std::min(bytes & -bytes, 16)) != 0)
    fail("misaligned global " + std::string(path == GlobalPath::store ? "store" : "load") + " of " +
             std::to_string(bytes) + " bytes at " + hex_address(p) + ": a GPU faults (misaligned address)",
         file, line);
  Fiber* f = current_;
  uint32_t call = 0;
  auto site = std::find_if(f->global_sites.begin(), f->global_sites.end(), [&](const GlobalSite& s) {
    return s.line == line && s.path == path && s.file == file;
  });
  if (site == f->global_sites.end())
    f->global_sites.push_back(GlobalSite{file, line, path, 1});
  else
    call = site->calls++;
  const unsigned warp = f->view.linear >> 5, lane = f->view.linear & 31u;
  auto& slots = global_slots_[warp];
  const auto it = slots.try_emplace(GlobalKey{file, line, path, call}).first;
  GlobalSlot& s = it->second;
  s.arrived |= 1u << lane;
  if (active) {
    s.addresses[s.active] = reinterpret_cast<uintptr_t>(p);
    s.bytes[s.active++] = bytes;
  }
  if ((s.arrived | exited_[warp] | absent_[warp]) == ~0u) {
    count_global(path, s);
    slots.erase(it);
  }
}

// At a barrier and a block's end: the instructions that some lanes skipped (a loop with
// fewer trips for them), with the lanes that made them.
void Worker::flush_global_slots() {
  for (auto& slots : global_slots_) {
    for (const auto& kv : slots) count_global(kv.first.path, kv.second);
    slots.clear();
  }
  for (Fiber& f : fibers_) f.global_sites.clear();
}

void Worker::flush_access_slot(SharedPath path, const AccessSlot& s) {
  int bytes = 4;  // the phase width follows the widest access of the instruction
  for (int lane = 0; lane < 32; ++lane) bytes = std::max(bytes, s.bytes[lane]);
  record_shared_access(path, s.addresses, s.bytes, 32, 128 / bytes);
}

void Worker::warpgroup_instruction(const char* name, const void* record, size_t bytes, const char* file, int line) {
  if (nthreads_ % 128 != 0)
    fail(std::string(name) + " needs whole warpgroups: the block has " + std::to_string(nthreads_) +
             " threads, not a multiple of 128",
         file, line);
  if (bytes > kWarpgroupRecordBytes) fail("warpgroup instruction record too large", file, line);
  Fiber* f = current_;
  WarpgroupLog& log = warpgroups_[f->view.linear / 128];
  const uint64_t k = f->warpgroup_seq++;  // >= log.base: an entry leaves once all 128 threads saw it
  if (k - log.base == log.entries.size()) {
    WarpgroupEntry e{name, file, line, f->view.linear, 1, bytes, {}};
    if (bytes) std::memcpy(e.record, record, bytes);
    log.entries.push_back(e);
    return;
  }
  WarpgroupEntry& e = log.entries[static_cast<size_t>(k - log.base)];
  if (std::strcmp(e.name, name) != 0)
    fail("this thread's warpgroup instruction " + std::to_string(k + 1) + " is " + name + ", but thread " +
             coord(fibers_[e.first_thread].view.thread_idx) + " of its warpgroup executed " + e.name + " at " +
             site(e.file, e.line) + " there: every thread of a warpgroup must execute the same wgmma instructions "
             "in the same order (.sync.aligned)",
         file, line);
  if (e.bytes != bytes || (bytes && std::memcmp(e.record, record, bytes) != 0))
    fail(std::string(name) + " (this thread's warpgroup instruction " + std::to_string(k + 1) +
             ") has other operands than thread " + coord(fibers_[e.first_thread].view.thread_idx) +
             " of its warpgroup gave it: descriptors, shape, scale-d and wait counts must be the same in the whole "
             "warpgroup (the tensor cores read one operand description per warpgroup)",
         file, line);
  ++e.seen;
  while (!log.entries.empty() && log.entries.front().seen == 128) {
    log.entries.pop_front();
    ++log.base;
  }
}

void Worker::async_copy_wait(int pending_groups_left) {
  Fiber* f = current_;
  const int limit = pending_groups_left < 0 ? INT32_MAX : f->async_group - pending_groups_left;
  auto landed = [&](const AsyncCopy& c) {
    if (c.group >= limit) return false;
    if (!c.landed) {
      std::memcpy(c.dst, c.data, static_cast<size_t>(c.bytes));
      note_generic_write(c.dst, static_cast<size_t>(c.bytes));
    }
    race_copy_waited(c);
    return true;
  };
  auto& q = f->async_copies;
  q.erase(std::remove_if(q.begin(), q.end(), landed), q.end());
}

void Worker::async_op_wait(int pending_groups_left) {
  Fiber* f = current_;
  const int limit = pending_groups_left < 0 ? INT32_MAX : f->async_op_group - pending_groups_left;
  auto& q = f->async_ops;
  size_t done = 0;
  while (done < q.size() && q[done].group < limit) {  // in issue order
    const AsyncOp op = q[done];
    running_op(&op.clocks);
    op.run(op.data);
    running_op(nullptr);
    ++done;
  }
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(done));
}

// ---- races on shared memory ------------------------------------------------------------
// Two threads' accesses to one 4-byte word, at least one a write, race unless a barrier
// orders them: a __syncthreads() between them, or for two lanes of one warp a
// __syncwarp() that both passed between (every __syncwarp mask is taken as the whole
// warp), or a named barrier: the first access's warp arrived at it after the access, and
// the second's synced at it (bar.sync) before the access, or a chain of such (per-warp
// clocks, known_; reads are kept per warp for this, warp_reads_). Other warp collectives (shuffles, ldmatrix, mma) do not order memory. A
// cp.async writes from its issue to the wait that lands it, and a wgmma reads from its
// issue to its wait; in those windows no other thread may touch the words, and before
// them the usual rule holds. Plain C++ accesses to shared memory are not seen (kernels
// make theirs through ld_shared / st_shared). The order in which the emulator runs the
// threads does not matter: whichever of two racing accesses comes second reports.

bool Worker::ordered(uint64_t tick, unsigned other, uint32_t sync) const {
  if (tick <= interval_) return true;  // before the last barrier (or never: tick 0)
  const unsigned self = current_->view.linear;
  return other == self || ((other >> 5) == (self >> 5) && current_->synced > sync) || knows(other >> 5, tick);
}

bool Worker::reads_ordered(const SharedWord& w, size_t word) const {
  if (w.read_tick <= interval_) return true;
  const unsigned self = current_->view.linear, own = self >> 5;
  const bool own_ordered = w.reader == self || (w.read_warp == own && current_->synced > w.read_sync);
  if (own_ordered) return true;
  if (!named_used_) return false;
  // Through named barriers: every warp's reads in this interval, warp by warp (this
  // thread's own reads are ordered, if no other lane of its warp read since the interval began).
  for (unsigned r = 0; r < nwarps_; ++r) {
    const uint64_t e = warp_reads_.get()[size_t(r) * kWords + word], t = e >> 6;
    if (t <= interval_ || knows(r, t)) continue;
    if (r == own && (e & 63u) == (self & 31u)) continue;  // only this lane (bit 5: several lanes)
    return false;
  }
  return true;
}

std::string Worker::readers(const SharedWord& w) const {
  return w.reader == kSeveralReaders ? "several threads read (the last, " + thread_name(w.last_reader) + ","
                                     : thread_name(w.reader) + " read";
}

void Worker::record_read(SharedWord& w, size_t word, uint64_t now, const char* file, int line) {
  const unsigned self = current_->view.linear, warp = self >> 5;
  // Per warp: the last read's tick, and its lane (bit 5 set once another lane read too).
  uint64_t& e = warp_reads_.get()[size_t(warp) * kWords + word];
  const bool recent = (e >> 6) > interval_;
  const bool several = recent && ((e & 32u) || (e & 31u) != (self & 31u));
  e = now << 6 | (several ? 32u : 0u) | (self & 31u);
  const uint32_t sync = warp_syncs_[warp];
  // A fresh record where every read so far is ordered before this one (an earlier
  // interval, or this warp's lanes before a __syncwarp() this thread passed): whatever is
  // ordered after this read is ordered after them too.
  if (w.read_tick <= interval_ || (w.read_warp == warp && current_->synced > w.read_sync)) {
    w.reader = static_cast<uint16_t>(self);
    w.read_warp = static_cast<uint16_t>(warp);
    w.read_sync = sync;
  } else {
    if (w.reader != self) w.reader = kSeveralReaders;
    if (w.read_warp != warp) w.read_warp = kSeveralReaders;
    w.read_sync = std::max(w.read_sync, sync);
  }
  w.last_reader = static_cast<uint16_t>(self);
  w.read_tick = now;
  w.read_file = file;
  w.read_line = line;
}

void Worker::race(const std::string& now, size_t word, const std::string& then, const char* then_file, int then_line,
                  const char* file, int line, const std::string& why) {
  fail("shared-memory race: " + now + " shared address " + std::to_string(4 * word) + ", which " + then + " at " +
           site(then_file, then_line) + ", " + why,
       file, line);
}

void Worker::check_no_copy(const SharedWord& w, size_t word, const char* now, const char* file, int line) {
  if (w.copies != 0)
    race(now, word, "is the destination of a cp.async that " + thread_name(w.copier) + " issued", w.copy_file,
         w.copy_line, file, line, kCopyInFlight);
}

void Worker::check_after_write(const SharedWord& w, size_t word, const char* now, const char* file, int line) {
  if (!ordered(w.write_tick, w.writer, w.write_sync))
    race(now, word, thread_name(w.writer) + " wrote", w.write_file, w.write_line, file, line);
}

void Worker::record_write(size_t first, size_t n, const char* file, int line) {
  const uint64_t now = ++tick_;
  const unsigned self = current_->view.linear;
  for (SharedWord* w = words_.get() + first; w != words_.get() + first + n; ++w) {
    w->write_tick = now;
    w->writer = static_cast<uint16_t>(self);
    w->write_sync = warp_syncs_[self >> 5];
    w->write_file = file;
    w->write_line = line;
  }
}

void Worker::race_read(const void* p, size_t bytes, const char* file, int line) {
  size_t n;
  const size_t first = words_of(p, bytes, &n);
  const uint64_t now = ++tick_;
  for (size_t word = first; word < first + n; ++word) {
    SharedWord& w = words_.get()[word];
    check_no_copy(w, word, "this thread reads", file, line);
    check_after_write(w, word, "this thread reads", file, line);
    record_read(w, word, now, file, line);
  }
}

void Worker::check_write(const void* p, size_t bytes, const char* now, const char* file, int line) {
  size_t n;
  const size_t first = words_of(p, bytes, &n);
  for (size_t word = first; word < first + n; ++word) {
    const SharedWord& w = words_.get()[word];
    check_no_copy(w, word, now, file, line);
    check_after_write(w, word, now, file, line);
    if (!reads_ordered(w, word)) race(now, word, readers(w), w.read_file, w.read_line, file, line);
  }
}

void Worker::race_write(const void* p, size_t bytes, const char* file, int line) {
  check_write(p, bytes, "this thread writes", file, line);
  size_t n;
  const size_t first = words_of(p, bytes, &n);
  record_write(first, n, file, line);
}

// A cp.async is a write from its issue to the issuing thread's wait: checked as one at
// the issue, its words marked in flight until the wait (any access meanwhile fails), and
// recorded as written at the wait, whichever landing mode put the bytes there.
void Worker::race_copy_issued(const void* p, size_t bytes, const char* file, int line) {
  check_write(p, bytes, "this thread's cp.async writes", file, line);
  size_t n;
  const size_t first = words_of(p, bytes, &n);
  for (SharedWord* w = words_.get() + first; w != words_.get() + first + n; ++w) {
    ++w->copies;
    w->copier = static_cast<uint16_t>(current_->view.linear);
    w->copy_file = file;
    w->copy_line = line;
  }
}

void Worker::race_copy_waited(const AsyncCopy& c) {
  size_t n;
  const size_t first = words_of(c.dst, static_cast<size_t>(c.bytes), &n);
  for (size_t word = first; word < first + n; ++word) --words_.get()[word].copies;
  record_write(first, n, c.file, c.line);
}

// An async operation's read (op: "wgmma" or "tensor store"), run at its wait with the
// issue's clocks (running_op: op_issued_, op_interval_, op_known_).
void Worker::race_async_read(uint32_t address, size_t bytes, const char* reads, const char* op, const char* file,
                             int line) {
  size_t n;
  const size_t first = words_of(shared_.get() + address, bytes, &n);
  const unsigned self = current_->view.linear;
  const uint64_t now = ++tick_;
  for (size_t word = first; word < first + n; ++word) {
    SharedWord& w = words_.get()[word];
    check_no_copy(w, word, reads, file, line);
    if (w.write_tick > op_issued_)
      race(reads, word, thread_name(w.writer) + " wrote", w.write_file, w.write_line, file, line,
           std::string("while the ") + op + " was in flight: its shared memory may not be written between its issue "
           "and its wait");
    const bool known_at_issue = op_known_ != nullptr && !op_known_->empty() && (*op_known_)[w.writer >> 5] >= w.write_tick;
    if (w.write_tick > op_interval_ && w.writer != self && !known_at_issue)
      race(reads, word, thread_name(w.writer) + " wrote", w.write_file, w.write_line, file, line,
           std::string("in the barrier interval the ") + op + " was issued in: no __syncthreads() (or named barrier) "
           "orders it before the " + op);
    record_read(w, word, now, file, line);
  }
}

void Worker::check_canaries() const {
  auto intact = [&](size_t from) {
    for (size_t i = 0; i < kSharedCanaryBytes; ++i)
      if (shared_.get()[from + i] != kSharedCanary) return false;
    return true;
  };
  const std::string w = "vggkern emulator: kernel '" + std::string(params_.kernel_name) + "' block " + coord(block_.block_idx);
  if (!intact(params_.dynamic_smem_bytes))
    throw std::runtime_error(w + ": wrote past the end of dynamic shared memory (" +
                             std::to_string(params_.dynamic_smem_bytes) + " bytes)");
  for (const SharedAlloc& a : shared_allocs_)
    if (!intact(a.offset + a.bytes))
      throw std::runtime_error(w + ": wrote past the end of a " + std::to_string(a.bytes) + "-byte VK_SHARED array");
}

std::string Worker::deadlock_report() const {
  unsigned at_barrier = 0, exited = 0, at_warp = 0, at_named = 0, at_mbarrier = 0;
  const Fiber* first_mbarrier = nullptr;
  const Fiber* first_exited = nullptr;
  const Fiber* first_warp = nullptr;
  const Fiber* first_named = nullptr;
  for (const Fiber& f : fibers_) {
    if (f.state == FiberState::at_barrier) ++at_barrier;
    if (f.state == FiberState::at_named && !at_named++) first_named = &f;
    if (f.state == FiberState::at_mbarrier && !at_mbarrier++) first_mbarrier = &f;
    if (f.state == FiberState::done && !first_exited) first_exited = &f;
    if (f.state == FiberState::done) ++exited;
    if (f.state == FiberState::at_warp) {
      ++at_warp;
      if (!first_warp) first_warp = &f;
    }
  }
  std::string s = "vggkern emulator: kernel '" + std::string(params_.kernel_name) + "' block " +
                  coord(block_.block_idx) + " can never finish: ";
  if (at_barrier) {
    s += "__syncthreads() at " + site(barrier_file_, barrier_line_) + " was reached by " +
         std::to_string(at_barrier) + " of " + std::to_string(nthreads_) + " threads";
    if (exited) s += "; " + std::to_string(exited) + " exited without reaching it (first: thread " + coord(first_exited->view.thread_idx) + ")";
    if (at_warp) s += "; " + std::to_string(at_warp) + " wait in warp collectives";
    s += ". Every thread of a block must reach each __syncthreads() (divergent barrier).";
  } else if (first_named) {
    const NamedBarrier& b = named_[first_named->named_id];
    s += "bar.sync of named barrier " + std::to_string(first_named->named_id) + " at " +
         site(first_named->wait_file, first_named->wait_line) + " waits with " + std::to_string(b.arrived) + " of its " +
         std::to_string(b.threads) + " threads arrived (" + std::to_string(at_named) +
         " threads wait at named barriers, " + std::to_string(exited) +
         " exited): the arrivals it waits for never come (a producer and its consumers out of step).";
  } else if (first_mbarrier) {
    const MBarrier& b = mbarriers_.at(first_mbarrier->mbarrier);
    s += "a wait at the mbarrier at shared address " + std::to_string(first_mbarrier->mbarrier) + " (initialised at " +
         site(b.file, b.line) + ") at " + site(first_mbarrier->wait_file, first_mbarrier->wait_line) + " waits with " +
         std::to_string(b.pending) + " of its " + std::to_string(b.count) + " arrivals and " + std::to_string(b.tx) +
         " bytes of tensor loads still to come (" + std::to_string(at_mbarrier) + " threads wait at mbarriers, " +
         std::to_string(exited) + " exited): they never come (a producer and its consumers out of step).";
  } else if (first_warp) {
    const WarpRecord* r = first_warp->record;
    const unsigned missing = r->mask & ~r->arrived;
    s += "warp collective at " + site(r->file, r->line) + " with mask " + hex(r->mask) + " in warp " +
         std::to_string(first_warp->view.linear >> 5) + " waits for lanes " + hex(missing) +
         ", which exited or wait elsewhere (divergent warp collective).";
  }
  return s;
}

}  // namespace

// ---- the device API, forwarding to the worker that runs the current fiber -----------

void kernel_fail(const std::string& what, const char* file, int line) { t_worker->fail(what, file, line); }
int block_barrier(int predicate, const char* file, int line) { return t_worker->block_barrier(predicate, file, line); }
void named_barrier(int id, int threads, bool wait, const char* file, int line) {
  t_worker->named_barrier(id, threads, wait, file, line);
}
void mbarrier_init(const void* bar, uint32_t count, const char* file, int line) {
  t_worker->mbarrier_init(bar, count, file, line);
}
void mbarrier_init_fence() { t_worker->mbarrier_init_fence(); }
void mbarrier_arrive(const void* bar, uint32_t expect_tx, const char* file, int line) {
  t_worker->mbarrier_arrive(bar, expect_tx, file, line);
}
void mbarrier_wait(const void* bar, uint32_t parity, const char* file, int line) {
  t_worker->mbarrier_wait(bar, parity, file, line);
}
void tensor_load(void* dst, const TensorMap& map, const int32_t* coords, const int32_t* offsets, const void* bar,
                 const char* file, int line) {
  t_worker->tensor_load(dst, map, coords, offsets, bar, file, line);
}
void tensor_store(const void* src, const TensorMap& map, const int32_t* coords, const char* file, int line) {
  t_worker->tensor_store(src, map, coords, file, line);
}
void tensor_store_commit() { t_worker->tensor_store_commit(); }
void tensor_store_wait() { t_worker->tensor_store_wait(); }
Exchange warp_exchange(Collective kind, unsigned mask, const void* value, size_t bytes, int predicate, const char* file,
                       int line) {
  return t_worker->warp_exchange(kind, mask, value, bytes, predicate, file, line);
}
void warp_exchange_done(void* handle) { t_worker->warp_exchange_done(static_cast<WarpRecord*>(handle)); }
void* shared_static(const void* tag, size_t bytes, size_t align, const char* file, int line) {
  return t_worker->shared_static(tag, bytes, align, file, line);
}
void* shared_dynamic() { return t_worker->shared_dynamic(); }
void async_copy(void* dst, const void* src, int bytes, int src_bytes, const char* file, int line) {
  t_worker->async_copy(dst, src, bytes, src_bytes, file, line);
}
void async_copy_commit() { t_worker->async_copy_commit(); }
bool in_shared(const void* p, size_t bytes) { return t_worker->in_shared(p, bytes); }
void note_shared_access(SharedPath path, const void* p, int bytes, const char* file, int line) {
  t_worker->note_shared_access(path, p, bytes, file, line);
}
void note_global_access(GlobalPath path, const void* p, int bytes, bool active, const char* file, int line) {
  t_worker->note_global_access(path, p, bytes, active, file, line);
}
void note_shared_read(const void* p, size_t bytes, const char* file, int line) {
  t_worker->race_read(p, bytes, file, line);
}
void async_copy_wait(int pending_groups_left) { t_worker->async_copy_wait(pending_groups_left); }
uint32_t shared_address(const void* p, const char* file, int line) { return t_worker->shared_address(p, file, line); }
const unsigned char* shared_at(uint32_t address, size_t bytes, const char* file, int line) {
  return t_worker->shared_at(address, bytes, file, line);
}
void async_op_enqueue(AsyncOpFn run, const void* op, size_t bytes, const char* file, int line) {
  t_worker->async_op_enqueue(run, op, bytes, file, line);
}
void async_op_commit() { t_worker->async_op_commit(); }
void async_proxy_fence() { t_worker->fence_proxy_async(); }
void async_proxy_read(uint32_t address, size_t bytes, const char* file, int line) {
  t_worker->async_proxy_read(address, bytes, file, line);
}
void async_op_wait(int pending_groups_left) { t_worker->async_op_wait(pending_groups_left); }
void warpgroup_instruction(const char* name, const void* record, size_t bytes, const char* file, int line) {
  t_worker->warpgroup_instruction(name, record, bytes, file, line);
}
WgmmaRegisters& wgmma_registers() { return t_worker->wgmma_registers(); }

bool cp_async_lands_eagerly() {
  const char* env = std::getenv("VGGKERN_EMU_CP_ASYNC");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "wait") == 0) return false;
  if (std::strcmp(env, "eager") == 0) return true;
  throw std::runtime_error(std::string("vggkern emulator: VGGKERN_EMU_CP_ASYNC must be \"wait\" (the default) or "
                                       "\"eager\", got '") + env + "'");
}

int worker_count() {
  static const int n = static_cast<int>(std::min<long>(
      64, env_integer("VGGKERN_EMU_THREADS", std::max(1u, std::thread::hardware_concurrency()), 1, 1L << 20)));
  return n;
}

void run_grid(const LaunchParams& p, FunctionRef body) {
  const std::string name = "vggkern emulator: kernel '" + std::string(p.kernel_name) + "': ";
  const uint64_t threads = uint64_t(p.block.x) * p.block.y * p.block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || p.block.z > 64)
    throw std::runtime_error(name + "invalid block " + coord(uint3{p.block.x, p.block.y, p.block.z}) +
                             " (at most 1024 threads, z at most 64)");
  if (p.grid.x == 0 || p.grid.y == 0 || p.grid.z == 0 || p.grid.x > 0x7fffffffu || p.grid.y > 65535 ||
      p.grid.z > 65535)
    throw std::runtime_error(name + "invalid grid " + coord(uint3{p.grid.x, p.grid.y, p.grid.z}));
  if (p.dynamic_smem_bytes > kMaxSharedBytesPerBlock)
    throw std::runtime_error(name + "asks for " + std::to_string(p.dynamic_smem_bytes) +
                             " bytes of dynamic shared memory, more than " + std::to_string(kMaxSharedBytesPerBlock));

  const uint64_t blocks = uint64_t(p.grid.x) * p.grid.y * p.grid.z;
  const unsigned nworkers = static_cast<unsigned>(std::min<uint64_t>(blocks, worker_count()));
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex error_mutex;
  std::string error;

  auto work = [&]() {
    try {
      Worker w(p, body);
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t i = next.fetch_add(1);
        if (i >= blocks) break;
        w.run_block(uint3{static_cast<unsigned>(i % p.grid.x), static_cast<unsigned>((i / p.grid.x) % p.grid.y),
                          static_cast<unsigned>(i / (uint64_t(p.grid.x) * p.grid.y))});
      }
      add_global_sector_stats(p.kernel_name, w.global_counts());
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (error.empty()) error = e.what();
      stop = true;
    }
    t_worker = nullptr;
    t_block = nullptr;
  };

  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < nworkers; ++i) helpers.emplace_back(work);
  work();
  for (auto& t : helpers) t.join();
  if (!error.empty()) throw std::runtime_error(error);
}

}  // namespace emu
}  // namespace vk
