# vlua — build, test, install, asan, bench.
#
#   make            build vlua, libvlua.a, libvlua.so, vl.so, vlua.pc into $(BUILD)/
#   make run        install missing Debian packages, build, run the main job
#   make test       install missing Debian packages, build, run every test
#   make asan       the same suite under AddressSanitizer + UBSan (build-asan/)
#   make bench      the benchmarks in scripts/bench/
#   make install PREFIX=/usr/local
#
# Several builds can share a checkout: BUILD=build-x keeps objects apart.

BUILD   ?= build
PREFIX  ?= /usr/local
CC      ?= cc

# FFmpeg (media I/O), libsndfile (audio files), FFTW3 (STFT) come with the
# Debian -dev packages scripts/setup.sh installs.
PKGS      := lua5.4 openblas libavformat libavcodec libswscale libswresample libavutil sndfile fftw3f fftw3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT     ?= -O2
CFLAGS  ?=
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -fPIC -fopenmp \
           -D_DEFAULT_SOURCE -D_GNU_SOURCE $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS += -fopenmp $(EXTRA_LDFLAGS)
LIBS    := $(PKG_LIBS) -lreadline -lcjson -lz -lm -ldl -lpthread

OPS_SRC   := $(sort $(wildcard ops/*.c ops/*/*.c))
# libvlua (and vl.so, for require "vl" from a stock lua5.4) hold the core,
# the bindings and the embedding API; main.c and repl.c make the CLI.
MOD_SRC   := $(sort $(filter-out vm/main.c vm/repl.c,$(wildcard vm/*.c)))
CLI_SRC   := vm/main.c vm/repl.c

OPS_OBJ   := $(OPS_SRC:%.c=$(BUILD)/%.o)
MOD_OBJ   := $(MOD_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIB_OBJ   := $(OPS_OBJ) $(MOD_OBJ)

TEST_C    := $(sort $(wildcard tests/c/test_*.c))
TEST_BIN  := $(TEST_C:tests/c/%.c=$(BUILD)/tests/%)

ALL := $(BUILD)/vlua $(BUILD)/libvlua.a $(BUILD)/libvlua.so $(BUILD)/vl.so $(BUILD)/vlua.pc

.PHONY: all run test check asan bench install clean setup fixtures
all: $(ALL)

$(BUILD)/%.o: %.c $(wildcard ops/*.h vm/*.h ops/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvlua.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libvlua.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/vl.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-z,nodelete $(LDFLAGS) -o $@ $^ $(filter-out -llua5.4,$(LIBS))

$(BUILD)/vlua: $(CLI_OBJ) $(BUILD)/libvlua.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $(CLI_OBJ) $(BUILD)/libvlua.a $(LIBS)

$(BUILD)/vlua.pc: vlua.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(shell sed -n 's/^#define VL_VERSION "\(.*\)"/\1/p' ops/vl.h)|g' $< > $@

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libvlua.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iops -Ivm -o $@ $< $(BUILD)/libvlua.a $(LDFLAGS) $(LIBS) -lcmocka

$(BUILD)/examples/embed: examples/embed.c $(BUILD)/libvlua.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iops -Ivm -o $@ $< $(BUILD)/libvlua.a $(LDFLAGS) $(LIBS)

setup:
	@sh scripts/setup.sh

# The main job: a small ViT learns Fashion-MNIST (scripts/train_vit.lua;
# RUN_ARGS="--epochs 12 --threads 1" passes flags).
run: setup
	@$(MAKE) --no-print-directory all
	$(BUILD)/vlua scripts/train_vit.lua $(RUN_ARGS)

test: setup
	@$(MAKE) --no-print-directory all tests
	@sh tests/run.sh $(BUILD)

check: test

.PHONY: tests
tests: $(TEST_BIN) $(BUILD)/examples/embed

asan: setup
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" all tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1 sh tests/run.sh build-asan

# libFuzzer harnesses for the file parsers (tests/fuzz/fuzz_*.c), clang with
# ASan + UBSan; each runs FUZZ_SECONDS, seeded with the test fixtures.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := safetensors npy idx pdbqt
.PHONY: fuzz
fuzz:
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ_CC) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -fno-omit-frame-pointer -fopenmp -D_DEFAULT_SOURCE -D_GNU_SOURCE $(PKG_CFLAGS) -Iops \
	    -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(OPS_SRC) \
	    $(filter-out -llua5.4 -lreadline,$(LIBS)) || exit 1; \
	  mkdir -p build-fuzz/corpus_$$t; \
	  seeds=tests/fixtures/io; [ $$t = pdbqt ] && seeds=tests/fixtures/dock_screen; \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    build-fuzz/corpus_$$t $$seeds || exit 1; \
	done

bench:
	@sh scripts/setup.sh --bench
	@$(MAKE) --no-print-directory all
	@# video_*.lua are the parts scripts/bench/video.lua runs in turn
	@for f in scripts/bench/*.lua; do case $$f in */video_*.lua) continue;; esac; \
	  echo "== $$f"; $(BUILD)/vlua $$f || exit 1; done

fixtures:
	@sh scripts/setup.sh --bench
	@for f in scripts/fixtures/*.py; do echo "== $$f"; /usr/bin/python3 $$f || exit 1; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/vlua $(DESTDIR)$(PREFIX)/share/vlua \
	  $(DESTDIR)$(PREFIX)/lib/lua/5.4 $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(BUILD)/vlua $(DESTDIR)$(PREFIX)/bin/vlua
	install -m 644 $(BUILD)/libvlua.a $(DESTDIR)$(PREFIX)/lib/libvlua.a
	install -m 755 $(BUILD)/libvlua.so $(DESTDIR)$(PREFIX)/lib/libvlua.so
	install -m 755 $(BUILD)/vl.so $(DESTDIR)$(PREFIX)/lib/lua/5.4/vl.so
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' $(BUILD)/vlua.pc > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vlua.pc
	install -m 644 ops/vl.h vm/vlua.h $(DESTDIR)$(PREFIX)/include/vlua/
	cp -R stdlib/vl $(DESTDIR)$(PREFIX)/share/vlua/
	install -m 644 man/vlua.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/vlua.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/vl.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf build build-asan build-*

# man/vl.7 is assembled from one part per subsystem (man/parts/*.7).
MAN_PARTS := tensor elementwise reduce linalg fft index random conv conv3d interpolate video_ops flow nn attention ssm nn_lua s4d transformer vit video_models video_data mamba optim script io audio media dock dock_mol dock_search dock_screen
.PHONY: man
man:
	cat man/vl.7.head $(foreach p,$(MAN_PARTS),man/parts/$(p).7) man/vl.7.tail > man/vl.7
