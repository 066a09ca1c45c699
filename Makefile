# Nexus build. GNU Make + pkg-config; C11.
#
#   make                 build/nexus and build/plugins/*.so
#   make run             install missing packages, build, serve on http://127.0.0.1:8000
#   make test            install missing packages, build, run unit + integration tests
#   make bench           wrk against Nexus and nginx, ratios printed (not a test)
#   make fuzz            libFuzzer targets (clang) in build/fuzz/
#   make install PREFIX=/usr/local
#   make SANITIZE=address,undefined test    the whole suite under ASan/UBSan
#   make format / format-check

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
SANITIZE ?=
PYTHON   ?= /usr/bin/python3

PKGS     := jansson yaml-0.1 sqlite3 libpq libmariadb hiredis libcrypto
VERSION  := 0.1.0

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE -DNX_VERSION='"$(VERSION)"'
ALL_CFLAGS = -std=c11 -pthread -fno-strict-aliasing $(WARN) $(CFLAGS) $(SAN_FLAGS) \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldl -lm -pthread

ifneq ($(SANITIZE),)
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
BUILD     := build-san
endif

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
CORO_SRC := src/core/coro_x86_64.S
else
CORO_SRC := src/core/coro_ucontext.c
endif

LIB_SRC  := $(filter-out src/cli/main.c src/core/coro_ucontext.c,$(wildcard src/*/*.c))
ifeq ($(ARCH),x86_64)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/src/core/coro_x86_64.o
else
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/src/core/coro_ucontext.o
endif
LIB      := $(BUILD)/libnexus.a
BIN      := $(BUILD)/nexus

PLUGINS      := $(patsubst plugins/%/,%,$(sort $(dir $(wildcard plugins/*/*.c))))
PLUGIN_SO    := $(PLUGINS:%=$(BUILD)/plugins/%.so)
TESTPLUGINS  := $(patsubst tests/plugins/%/,%,$(sort $(dir $(wildcard tests/plugins/*/*.c))))
TESTPLUGIN_SO:= $(TESTPLUGINS:%=$(BUILD)/test-plugins/%.so)

# A plugin's migrations go beside its .so, in NAME/migrations/ (src/db/migrate.h); a copy
# whose source is gone is removed, so that a renamed migration does not linger.
MIGRATIONS      := $(patsubst plugins/%,$(BUILD)/plugins/%,$(wildcard plugins/*/migrations/*.sql))
TESTMIGRATIONS  := $(patsubst tests/plugins/%,$(BUILD)/test-plugins/%,\
                     $(wildcard tests/plugins/*/migrations/*.sql))
STALEMIGRATIONS := $(filter-out $(MIGRATIONS) $(TESTMIGRATIONS),$(wildcard \
                     $(BUILD)/plugins/*/migrations/*.sql $(BUILD)/test-plugins/*/migrations/*.sql))

CASES_SO := $(patsubst tests/plugin-cases/%.c,$(BUILD)/plugin-cases/%.so,\
              $(wildcard tests/plugin-cases/*.c))

# Libraries the tests preload into the server (a slow resolver); never sanitized: they sit
# before the sanitizer runtime in the process.
SHIMS_SO := $(patsubst tests/shims/%.c,$(BUILD)/test-shims/%.so,$(wildcard tests/shims/*.c))

UNIT_SRC := $(wildcard tests/unit/*/*_test.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test unit integration bench fuzz install deps clean format format-check \
        test-build docs prune-migrations

all: $(BIN) $(PLUGIN_SO) $(MIGRATIONS) prune-migrations

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.S
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(SAN_FLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# -rdynamic: plugins resolve the nx_* API against the executable itself.
$(BIN): $(BUILD)/obj/src/cli/main.o $(LIB)
	$(CC) $(ALL_CFLAGS) -rdynamic -o $@ $< -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive \
	    $(LDFLAGS) $(LDLIBS)

# A bundled plugin that needs libraries names them in plugins/NAME/libs (pkg-config names).
$(BUILD)/plugins/%.so: plugins/%/*.c include/nexus/*.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fPIC -shared -o $@ $(filter %.c,$^) \
	    $(if $(wildcard plugins/$*/libs),$(shell pkg-config --cflags --libs $$(cat plugins/$*/libs)))

$(BUILD)/test-plugins/%.so: tests/plugins/%/*.c tests/plugins/*.h include/nexus/*.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fPIC -shared -o $@ $(filter %.c,$^)

$(BUILD)/test-shims/%.so: tests/shims/%.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -fPIC -shared -o $@ $< -ldl

$(BUILD)/plugins/%.sql: plugins/%.sql
	@mkdir -p $(@D)
	cp $< $@

$(BUILD)/test-plugins/%.sql: tests/plugins/%.sql
	@mkdir -p $(@D)
	cp $< $@

prune-migrations:
	$(if $(STALEMIGRATIONS),rm -f $(STALEMIGRATIONS))

$(BUILD)/plugin-cases/%.so: tests/plugin-cases/%.c include/nexus/*.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fPIC -shared -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(LIB) $(shell pkg-config --libs criterion) \
	    $(LDFLAGS) $(LDLIBS)

deps:
	@scripts/install-deps.sh test

run:
	@scripts/install-deps.sh run
	@$(MAKE) --no-print-directory all
	$(BIN) serve

test-build: all $(TESTPLUGIN_SO) $(TESTMIGRATIONS) $(CASES_SO) $(SHIMS_SO) $(UNIT_BIN)

unit: test-build
	@scripts/run-unit.sh $(UNIT_BIN)

integration: test-build
	NEXUS_BIN=$(abspath $(BIN)) NEXUS_BUILD=$(abspath $(BUILD)) \
	    $(PYTHON) -m pytest -q tests/integration

test: deps
	@$(MAKE) --no-print-directory test-build
	@scripts/run-tests.sh $(BUILD) $(UNIT_BIN)

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory all
	bench/run.sh $(abspath $(BIN))

# Builds the fuzz target and runs it for FUZZ_TIME seconds. New inputs go to a corpus in
# the build folder; the committed seeds in tests/fuzz/corpus are only read.
FUZZ_TIME ?= 60
fuzz:
	@mkdir -p $(BUILD)/fuzz/corpus
	clang $(CPPFLAGS) -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined \
	    -o $(BUILD)/fuzz/http1_fuzz tests/fuzz/http1_fuzz.c src/http/http1_parse.c
	$(BUILD)/fuzz/http1_fuzz -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/http1.dict \
	    -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus tests/fuzz/corpus/http1

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/nexus \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/nexus/plugins
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/nexus
	install -m 644 include/nexus/*.h $(DESTDIR)$(PREFIX)/include/nexus/
	install -m 755 $(PLUGIN_SO) $(DESTDIR)$(PREFIX)/lib/nexus/plugins/
	for p in $(PLUGINS); do \
	    rm -rf $(DESTDIR)$(PREFIX)/lib/nexus/plugins/$$p/migrations; \
	    if [ -d plugins/$$p/migrations ]; then \
	        install -d $(DESTDIR)$(PREFIX)/lib/nexus/plugins/$$p/migrations && \
	        install -m 644 plugins/$$p/migrations/*.sql \
	            $(DESTDIR)$(PREFIX)/lib/nexus/plugins/$$p/migrations/; \
	    fi; \
	done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' nexus.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nexus.pc

# The configuration reference is generated from the schema (a test checks it is current).
docs: all
	$(BIN) config docs > docs/configuration.md

FORMAT_SRC = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC) && echo "format-check: clean"

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/cli/main.d
