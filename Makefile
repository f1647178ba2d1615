# conclave: one entry point. `make` builds everything; see README.md for the rest.
BUILD ?= build
CC ?= cc
CLANG ?= clang

PKGS := tss2-esys tss2-mu tss2-tctildr tss2-rc libcrypto json-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wno-unused-parameter -Wvla
# gcc's format-truncation guesses fire on every bounded snprintf of a path; clang has no such flag.
WARN += $(shell $(CC) -Werror -Wno-format-truncation -E -x c /dev/null >/dev/null 2>&1 && echo -Wno-format-truncation)
CFLAGS ?= -O2 -g
# INTERNALBUILD only silences tss2_tpm2_types.h's deprecation of a struct that tss2_mu.h itself uses.
CPPFLAGS += -Iinclude $(PKG_CFLAGS) -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -DINTERNALBUILD
ALL_CFLAGS = -std=gnu11 $(WARN) -fstack-protector-strong -fPIC -MMD -MP $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS += $(PKG_LIBS)

# eBPF: bpf/NAME.bpf.c -> $(BUILD)/bpf/NAME.bpf.o -> $(BUILD)/bpf/NAME.skel.h (bpftool gen skeleton).
BPF_SRC := $(wildcard bpf/*.bpf.c)
BPF_OBJ := $(BPF_SRC:bpf/%.bpf.c=$(BUILD)/bpf/%.bpf.o)
BPF_SKEL := $(BPF_SRC:bpf/%.bpf.c=$(BUILD)/bpf/%.skel.h)
BPF_CFLAGS := -g -O2 -target bpf -Wall -Wextra -Werror -Iinclude -Ibpf -D__TARGET_ARCH_x86 \
	-idirafter /usr/include/$(shell $(CLANG) -print-multiarch)
CPPFLAGS += -I$(BUILD)/bpf
LDLIBS += -lbpf -lelf -lz

LIB_SRC := $(wildcard userspace/lib/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libconclave.a

CTL_SRC := $(wildcard userspace/ctl/*.c)
CTL_OBJ := $(CTL_SRC:%.c=$(BUILD)/%.o)
CTL := $(BUILD)/conclavectl

INIT_SRC := $(wildcard userspace/init/*.c)
INIT_OBJ := $(INIT_SRC:%.c=$(BUILD)/%.o)
INIT := $(BUILD)/conclave-init

TESTLIB_SRC := $(wildcard tests/lib/*.c)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/unit/test_*.c tests/bpf/test_*.c tests/integration/test_*.c)
TESTS := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOLS := $(TOOL_SRC:%.c=$(BUILD)/%)

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD := $(BUILD)/fuzz
FUZZERS := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 20

.SECONDARY:
.PHONY: all check tests asan fuzz fuzz-smoke lint format bench demo clean install-deps image e2e
all: $(BPF_SKEL) $(LIB) $(CTL) $(INIT) $(TESTS) $(TOOLS)

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/lib/*.h) include/conclave/datapath_abi.h
	@mkdir -p $(dir $@)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	bpftool gen skeleton $< name $(subst -,_,$*)_bpf > $@

# Userspace objects may include skeletons: build those first.
$(LIB_OBJ) $(CTL_OBJ): | $(BPF_SKEL)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CTL): $(CTL_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CTL_OBJ) $(LIB) $(LDLIBS)

$(INIT): $(INIT_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(INIT_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TESTLIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/lib $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(TESTLIB_OBJ) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/lib/%.o: tests/lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/lib $(ALL_CFLAGS) -c $< -o $@

tests: $(TESTS) $(TOOLS) $(CTL)

# The whole suite: unit, integration (real swtpm), shell contract tests. Ends with "N passed, N failed".
# Dependencies first, then a sub-make: pkg-config flags must be read after the install.
check: install-deps
	$(MAKE) all
	scripts/run-tests $(BUILD)

# AddressSanitizer + UBSan build of the same tests, in its own build directory.
asan:
	CONCLAVE_SKIP=e2e $(MAKE) BUILD=build-asan CC=$(CLANG) \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address,undefined" check

$(FUZZ_BUILD)/userspace/lib/%.o: userspace/lib/%.c | $(BPF_SKEL)
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -std=gnu11 -g -O1 $(FUZZ_FLAGS) -c $< -o $@

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

fuzz: $(FUZZERS)

# Each fuzz target for a bounded time, starting from its seed corpus.
fuzz-smoke: fuzz
	scripts/fuzz-smoke $(FUZZ_BUILD) $(FUZZ_SECONDS)

LINT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
lint:
	clang-format --dry-run --Werror $(LINT_SRC)
	clang-tidy --quiet $(filter %.c,$(LINT_SRC)) -- $(CPPFLAGS) -Itests/lib -std=gnu11

format:
	clang-format -i $(LINT_SRC)

# Each script measures its own baseline in the same run and prints ratios (docs/benchmarks.md).
bench: install-deps
	$(MAKE) all
	scripts/bench-attest $(BUILD)
	scripts/bench-bpf-verdicts $(BUILD)
	scripts/bench-datapath $(BUILD)
	scripts/bench-boot $(BUILD)

demo: install-deps
	$(MAKE) all
	scripts/demo $(BUILD)

install-deps:
	scripts/install-deps

# Node images (build/image/node.efi, node-debug.efi; reproducible) and the QEMU boot tests.
image: all
	scripts/build-image --build $(BUILD)

e2e: image
	scripts/run-tests $(BUILD) e2e

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
