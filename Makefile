# engagement_scoring: PGXS build of the extension, plus the C++ kernel unit tests.
EXTENSION    = engagement_scoring
MODULE_big   = engagement_scoring
KERNEL_SRCS  = $(wildcard src/*.cpp)
# The PostgreSQL glue, plain C, one file per family of SQL objects (src/glue/es_glue.h).
GLUE_SRCS    = $(wildcard src/glue/*.c)
OBJS         = $(GLUE_SRCS:.c=.o) $(KERNEL_SRCS:.cpp=.o)
DATA         = $(wildcard sql/engagement_scoring--*.sql)

# pg_regress reads sql/<test>.sql and expected/<test>.out (the classic layout), in this order.
REGRESS      = setup schema scoring parallel time_decay errors refresh funnel search_path models distributed
REGRESS_OPTS = --inputdir=.
# Two-session tests (isolationtester): test/isolation/specs/<test>.spec, expected/<test>.out.
ISOLATION      = refresh_concurrency
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
PG_CXXFLAGS  = -std=c++17
SHLIB_LINK   = -lstdc++ -lm
COMPILE.cxx.bc = $(CLANG) -xc++ -std=c++17 -Wno-ignored-attributes $(BITCODE_CXXFLAGS) $(CPPFLAGS) -flto=thin -emit-llvm -c

EXTRA_CLEAN  = test/unit/kernel_tests results regression.diffs regression.out test/isolation/results

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks header dependencies only in a PostgreSQL configured with --enable-depend.
$(GLUE_SRCS:.c=.o) $(GLUE_SRCS:.c=.bc): src/glue/es_glue.h src/scoring_kernel.h src/btyd_kernel.h

# GoogleTest unit tests of the pure C++ kernels (no PostgreSQL needed).
UNIT_SRCS = $(wildcard test/unit/*.cpp)
test/unit/kernel_tests: $(KERNEL_SRCS) $(UNIT_SRCS) $(wildcard src/*.h)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -Isrc -o $@ $(KERNEL_SRCS) $(UNIT_SRCS) -lgtest -lgtest_main -pthread

.PHONY: unittest
unittest: test/unit/kernel_tests
	test/unit/kernel_tests
