# engagement_scoring: PGXS build of the extension, plus the C++ kernel unit tests.
EXTENSION    = engagement_scoring
MODULE_big   = engagement_scoring
KERNEL_SRCS  = $(wildcard src/*.cpp)
# The PostgreSQL glue, plain C, one file per family of SQL objects (src/glue/es_glue.h).
GLUE_SRCS    = $(wildcard src/glue/*.c)
OBJS         = $(GLUE_SRCS:.c=.o) $(KERNEL_SRCS:.cpp=.o)
EXTVERSION   = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
# CREATE EXTENSION runs one script: the current version's, built from src/sql/ (one file per
# concern, in dependency order) into extension/.  extension/ also holds what older versions need,
# committed: 1.0's install script and every upgrade script, so that ALTER EXTENSION ... UPDATE
# works from each released version.
SQL_SOURCES  = $(addprefix src/sql/,schema.sql scoring.sql tracking.sql refresh.sql queries.sql presentation.sql \
                                    models.sql predictions.sql scheduling.sql citus.sql access.sql)
DATA_built   = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA         = extension/$(EXTENSION)--1.0.sql $(wildcard extension/$(EXTENSION)--*--*.sql)

# pg_regress reads sql/<test>.sql and expected/<test>.out (the classic layout), in this order.
REGRESS      = setup schema profile_bounds scoring parallel time_decay errors refresh refresh_pending refresh_switch funnel presentation \
               search_path models predictions fit_ladder horizons validation distributed source_access change_tracking score_distribution erasure aggregate_inputs
REGRESS_OPTS = --inputdir=.
# Two-session tests (isolationtester): test/isolation/specs/<test>.spec, expected/<test>.out.
ISOLATION      = refresh_concurrency refresh_profiles forget_during_refresh
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation

PG_CONFIG   ?= pg_config
# The glue compiles with -Wall -Wextra -Werror.  PostgreSQL's server headers come in as system
# headers: some of their inline functions and macros (ilist.h, bufpage.h, array.h, VARATT_*) do
# not pass -Wextra (unused parameters, signed/unsigned comparisons), which is not ours to fix;
# the glue's own code, format strings of its ereport()s included, stays checked.
PG_CPPFLAGS  = -I$(srcdir)/src -isystem $(includedir_server)
PG_CFLAGS    = -Wall -Wextra -Werror
# The kernel is C++17.  PGXS links with gcc, so bring the C++ runtime along, and give the
# LLVM bitcode compile (clang-14 defaults to C++14) the same standard.
PG_CXXFLAGS  = -std=c++17 -Wall -Wextra -Werror
SHLIB_LINK   = -lstdc++ -lm
COMPILE.cxx.bc = $(CLANG) -xc++ -std=c++17 -Wno-ignored-attributes $(BITCODE_CXXFLAGS) $(CPPFLAGS) -flto=thin -emit-llvm -c

EXTRA_CLEAN  = test/unit/kernel_tests results regression.diffs regression.out test/isolation/results META.json

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXN: META.json is built from META.json.in with the control file's version, so the version is
# written in one place (default_version); PGXN wants it as a semantic version (1.4 -> 1.4.0).
PGXN_VERSION = $(shell echo '$(EXTVERSION)' | sed -E 's/^([0-9]+\.[0-9]+)$$/\1.0/')
all: META.json
META.json: META.json.in $(EXTENSION).control
	sed -e 's/@PGXN_VERSION@/$(PGXN_VERSION)/g' -e 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@

# The PGXN distribution: the committed tree at HEAD plus the two built files PGXN reads (META.json
# and the install script its "provides" names).
.PHONY: dist
dist: META.json extension/$(EXTENSION)--$(EXTVERSION).sql
	git archive --format zip --prefix=$(EXTENSION)-$(PGXN_VERSION)/ --add-file=META.json \
	    --prefix=$(EXTENSION)-$(PGXN_VERSION)/extension/ --add-file=extension/$(EXTENSION)--$(EXTVERSION).sql \
	    --prefix=$(EXTENSION)-$(PGXN_VERSION)/ -o $(EXTENSION)-$(PGXN_VERSION).zip HEAD

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(EXTENSION).control
	{ printf '%s\n' '-- engagement_scoring $(EXTVERSION): the complete install script, built by the Makefile' \
	         '-- from src/sql/*.sql (edit those, not this file).' '' \
	         '\echo Use "CREATE EXTENSION engagement_scoring" to load this file. \quit'; \
	  for f in $(SQL_SOURCES); do printf '\n-- ===== %s\n\n' $$f; cat $$f; done; } > $@

# The upgrade script to the current version: its hand-written part (src/sql/updates/FROM--TO.sql:
# ALTERs, data moves) around every function and aggregate of src/sql/, written by
# scripts/build_update.py.  Committed (a user's build needs no Python); test/shell/upgrade.sh
# checks that it is current.  Released versions' upgrade scripts are frozen: no rule writes them.
UPDATE_PART   = $(wildcard src/sql/updates/*--$(EXTVERSION).sql)
UPDATE_SCRIPT = $(patsubst src/sql/updates/%.sql,extension/$(EXTENSION)--%.sql,$(UPDATE_PART))
.PHONY: update-script check-update-script
update-script:
	python3 scripts/build_update.py $(UPDATE_PART) $(SQL_SOURCES) > $(UPDATE_SCRIPT).tmp && mv $(UPDATE_SCRIPT).tmp $(UPDATE_SCRIPT)
check-update-script:
	python3 scripts/build_update.py $(UPDATE_PART) $(SQL_SOURCES) | diff -u $(UPDATE_SCRIPT) - >/dev/null \
	    || { echo "$(UPDATE_SCRIPT) is not what src/sql/ makes of it: run make update-script"; exit 1; }

# PGXS tracks header dependencies only in a PostgreSQL configured with --enable-depend: rebuild
# every object (and its JIT bitcode) when a header changes, so that the glue and the kernels never
# disagree on a struct's layout.
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h)
$(GLUE_SRCS:.c=.o) $(GLUE_SRCS:.c=.bc): src/glue/es_glue.h src/glue/pg_compat.h

# GoogleTest unit tests of the pure C++ kernels (no PostgreSQL needed).
UNIT_SRCS = $(wildcard test/unit/*.cpp)
test/unit/kernel_tests: $(KERNEL_SRCS) $(UNIT_SRCS) $(wildcard src/*.h test/unit/*.h)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -Isrc -o $@ $(KERNEL_SRCS) $(UNIT_SRCS) -lgtest -lgtest_main -pthread

.PHONY: unittest
unittest: test/unit/kernel_tests
	test/unit/kernel_tests
