# ember — build, test, install.
#
#   make                 build/libember.so and build/libember.a
#   make test            build and run the Criterion suite
#   make SAN=1 test      the same under ASan+UBSan, in build-san/
#   make TSAN=1 test     the concurrency tests under ThreadSanitizer, in build-tsan/
#   make FUZZ=1 libfuzz  libFuzzer targets (clang-14) for FUZZ_SECONDS each, in build-fuzz/
#   make demo            build the examples and run examples/gpt2_block.c (dumps in build/demo-dump)
#   make bench           ember-bench: workloads eager vs compiled vs PyTorch (BENCHFLAGS=...)
#   make bench BENCHFLAGS=--gemm   the generated GEMM against OpenBLAS, layout by layout
#   make bench-ops       eager per-op timings beside PyTorch (bench/ops)
#   make fuzz N=1000 SEED=1   ember-fuzz: N random programs, compiled vs eager (tests/fuzz)
#   make install PREFIX=/usr/local
#
# Missing Debian packages are installed (or named) by scripts/deps.sh first.

PREFIX ?= /usr/local
CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

ifeq ($(SAN),1)
B := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(FUZZ),1)
# libFuzzer targets (tests/libfuzz/): the library built by clang with coverage
# for the fuzzer, ASan and UBSan, in build-fuzz/.
B := build-fuzz
CC := clang-14
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(TSAN),1)
# ThreadSanitizer: the concurrency tests (tests/tsan/), a program of their own:
# Criterion's forking runner and shared arena do not run under TSan.
B := build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
B := build
SANFLAGS :=
endif

PKGS := sleef libffi openblas
DEPS_STAMP := $(B)/.deps-ok
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wno-missing-field-initializers
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(SANFLAGS) \
    -Iinclude -Iruntime -Iir -Ipasses -Icodegen -Ifrontend $(PKG_CFLAGS) $(LLVM_CFLAGS)
LDLIBS = $(PKG_LIBS) $(LLVM_LIBS) -lm -lpthread

# LLVM 19 (the system llvm-config is 14): only its include path (not its -O/-std
# flags) and the one shared libLLVM, which links in milliseconds.
LLVM_CONFIG := llvm-config-19
LLVM_CFLAGS = -I$(shell $(LLVM_CONFIG) --includedir 2>/dev/null)
LLVM_LIBS = $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) -lLLVM-19

LAYERS := runtime ir passes codegen frontend
SIMD_SRC := $(wildcard runtime/*_simd.c)
SRC := $(filter-out $(SIMD_SRC),$(foreach d,$(LAYERS),$(wildcard $(d)/*.c)))
ISAS := avx512 avx2 sse2
ISAFLAGS_avx512 := -DRT_ISA_AVX512 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma
ISAFLAGS_avx2 := -DRT_ISA_AVX2 -mavx2 -mfma
ISAFLAGS_sse2 := -DRT_ISA_SSE2
OBJ := $(SRC:%.c=$(B)/obj/%.o) \
    $(foreach i,$(ISAS),$(SIMD_SRC:%.c=$(B)/obj/%.$(i).o))

TEST_SRC := $(filter-out tests/tsan/% tests/libfuzz/% tests/fuzz/main.c,$(wildcard tests/*.c tests/*/*.c)) bench/models/models.c
TEST_OBJ := $(TEST_SRC:%.c=$(B)/obj/%.o)
# The model tests (tests/bench) include the benchmark's models.
$(TEST_OBJ): ALL_CFLAGS += -Ibench/models
TEST_BIN := $(B)/ember-tests

.PHONY: all test demo install deps clean bench bench-ops bench-guard fuzz libfuzz
all: $(B)/libember.so $(B)/libember.a $(B)/ember-bench $(B)/ember-bench-ops

$(DEPS_STAMP):
	@scripts/deps.sh
	@mkdir -p $(B) && touch $@

deps: $(DEPS_STAMP)

$(B)/obj/%.o: %.c $(DEPS_STAMP) $(wildcard include/*.h */*.h tests/*/*.h bench/*/*.h ir/*.def)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

define simd_rule
$(B)/obj/%.$(1).o: %.c $(DEPS_STAMP) $(wildcard include/*.h */*.h)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) -O3 $$(ISAFLAGS_$(1)) -c $$< -o $$@
endef
$(foreach i,$(ISAS),$(eval $(call simd_rule,$(i))))

# Plain C kernel loops (casts, f64 and integer math) rely on the vectoriser.
$(B)/obj/runtime/ew.o: CFLAGS += -O3
# The AMX packers keep 48 vectors in registers only when unrolled.
$(B)/obj/runtime/amx.o: CFLAGS += -O3

$(B)/libember.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libember.so: $(OBJ)
	$(CC) -shared -Wl,--no-undefined $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_BIN): $(TEST_OBJ) $(B)/libember.a
	$(CC) $(SANFLAGS) -o $@ $(TEST_OBJ) $(B)/libember.a $(LDLIBS) -lcriterion

# ASan's leak checker runs at exit of each test process; UBSan aborts on the first
# report; run-tests.sh fails the run on any sanitizer report Criterion let pass.
ifeq ($(TSAN),1)
TSAN_BIN := $(B)/ember-tsan-tests
$(TSAN_BIN): $(wildcard tests/tsan/*.c tests/tsan/*.h) tests/tree.c tests/tree.h $(B)/libember.a
	$(CC) $(ALL_CFLAGS) -o $@ $(wildcard tests/tsan/*.c) tests/tree.c $(B)/libember.a $(LDLIBS)

test: $(TSAN_BIN)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $(TSAN_OPTIONS)" $(TSAN_BIN)
else
# The benchmarks and the fuzzer are built too, so that a change that breaks them
# fails here, and `make fuzz` after `make test` never runs a stale library.
test: $(TEST_BIN) $(B)/ember-bench $(B)/ember-bench-ops $(B)/ember-fuzz
	scripts/run-tests.sh $(TEST_BIN) --jobs 2 $(TESTFLAGS)
endif

$(B)/examples/%: examples/%.c $(B)/libember.so
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -L$(B) -lember -Wl,-rpath,$(abspath $(B)) -lm

# The first impression: a GPT-2 block eager vs compiled, every stage dumped.
# Eager runs OpenBLAS's AVX-512 GEMM as ember-bench does: Debian's OpenBLAS
# 0.3.21 misreads AVX-512 CPUs it does not know (this VM) and falls back to SSE3,
# which would make eager look 2-3x slower than it is.
DEMO_BLAS := $(if $(OPENBLAS_CORETYPE),,$(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo OPENBLAS_CORETYPE=SkylakeX))
demo: $(B)/examples/gpt2_block $(B)/examples/mlp
	EMBER_DUMP_DIR=$(B)/demo-dump $(DEMO_BLAS) $(B)/examples/gpt2_block

$(B)/ember-bench-ops: bench/ops.c bench/timing.c bench/limits.c bench/bench.h $(B)/libember.so
	$(CC) $(ALL_CFLAGS) -Ibench/models -DEMBER_BENCH_DIR='"$(abspath bench)"' -o $@ bench/ops.c bench/timing.c \
	    bench/limits.c -L$(B) -lember -Wl,-rpath,$(abspath $(B)) -lm -lpthread

BENCH_SRC := bench/main.c bench/timing.c bench/limits.c bench/report.c bench/gemm.c bench/models/models.c
$(B)/ember-bench: $(BENCH_SRC) bench/bench.h bench/models/models.h $(B)/libember.so
	$(CC) $(ALL_CFLAGS) -Ibench/models -DEMBER_BENCH_DIR='"$(abspath bench)"' -o $@ $(BENCH_SRC) \
	    -L$(B) -lember -Wl,-rpath,$(abspath $(B)) -lm -lpthread

# BENCHFLAGS: --threads N, --only a,b, --seconds S, --json, --no-peers, --gemm
bench: $(B)/ember-bench
	$(B)/ember-bench $(BENCHFLAGS)

$(B)/bench-guard: bench/guard.c $(B)/libember.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libember.a $(LDLIBS)

bench-guard: $(B)/bench-guard
	$(B)/bench-guard

# The differential fuzzer: random programs eagerly and compiled (FUZZFLAGS: -t THREADS).
N ?= 1000
SEED ?= 1
FUZZ_SRC := tests/fuzz/main.c tests/fuzz/gen.c tests/fuzz/check.c
$(B)/ember-fuzz: $(FUZZ_SRC) tests/fuzz/gen.h $(B)/libember.a
	$(CC) $(ALL_CFLAGS) -o $@ $(FUZZ_SRC) $(B)/libember.a $(LDLIBS)

fuzz: $(B)/ember-fuzz
	$(B)/ember-fuzz -n $(N) -s $(SEED) $(FUZZFLAGS)

bench-ops: $(B)/ember-bench-ops
	$(B)/ember-bench-ops $(BENCHFLAGS)

# make FUZZ=1 libfuzz: each libFuzzer target for FUZZ_SECONDS from its seed corpus.
FUZZ_SECONDS ?= 30
LIBFUZZ := $(patsubst tests/libfuzz/fuzz_%.c,$(B)/fuzz-%,$(wildcard tests/libfuzz/fuzz_*.c))
$(B)/fuzz-%: tests/libfuzz/fuzz_%.c $(B)/libember.a
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libember.a $(LDLIBS)

libfuzz: $(LIBFUZZ)
	@for t in $(LIBFUZZ); do name=$${t##*/fuzz-}; mkdir -p $(B)/corpus/$$name; \
	    echo "== $$t ($(FUZZ_SECONDS) s)"; \
	    $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(B)/corpus/$$name tests/libfuzz/corpus/$$name \
	        > $$t.log 2>&1; rc=$$?; grep -E '^(Done|stat::number_of|==[0-9]+==ERROR|SUMMARY)' $$t.log; \
	    [ $$rc -eq 0 ] || { echo "$$t failed: see $$t.log"; exit 1; }; done

# Rewritten on every install, so that it always names this run's PREFIX.
$(B)/ember.pc: FORCE
	@mkdir -p $(B)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: ember\nDescription: graph-capture JIT compiler for eager C tensor programs\nVersion: 0.1.0\nRequires.private: %s\nLibs: -L$${libdir} -lember\nLibs.private: %s -lm -lpthread\nCflags: -I$${includedir}\n' \
	    '$(PREFIX)' '$(PKGS)' '$(LLVM_LIBS)' > $@

install: all $(B)/ember.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/ember.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(B)/libember.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(B)/libember.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(B)/ember.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

FORCE:

clean:
	rm -rf build build-san build-tsan build-fuzz
