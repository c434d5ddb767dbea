// Unit tests of profile_params.h: the one list of a profile's parameters against the SQL table
// it mirrors, the defaults and the checks generated from it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "profile_params.h"
#include "scoring_kernel.h"

namespace {

struct Param {
    std::string column;
    std::string member;  // the member expression, as written
    size_t offset;
    double default_value;
    es_param_range range;
};

#define ES_TEST_PARAM(column, member, default_value, rule) \
    {#column, #member, offsetof(es_profile, member), default_value, rule},
const std::vector<Param> kParams = {ES_PROFILE_PARAMS(ES_TEST_PARAM)};
#undef ES_TEST_PARAM

double &field(es_profile &p, const Param &param) {
    return *reinterpret_cast<double *>(reinterpret_cast<char *>(&p) + param.offset);
}

// One float8 or integer column of engagement.scoring_profiles as src/sql/schema.sql creates it.
struct SqlColumn {
    std::string name, type, default_text, check;
};

// The float8 and integer columns of the CREATE TABLE of scoring_profiles that are scoring
// parameters, in order; the file is found by walking up from the working directory (the
// repository root when run as the Makefile does).  The refresh's and the fit's own settings and
// the profile's version are not scoring parameters.
std::vector<SqlColumn> sql_profile_columns(std::string *where) {
    const std::vector<std::string> not_parameters = {"history_min_delta", "fit_penalizer", "version"};
    std::string up;
    for (int depth = 0; depth < 6; ++depth, up += "../") {
        std::ifstream in(up + "src/sql/schema.sql");
        if (!in) continue;
        *where = up + "src/sql/schema.sql";
        std::stringstream text;
        text << in.rdbuf();
        const std::string sql = text.str();
        const size_t begin = sql.find("CREATE TABLE @extschema@.scoring_profiles (");
        const size_t end = sql.find("\n);", begin);
        if (begin == std::string::npos || end == std::string::npos) return {};
        std::istringstream table(sql.substr(begin, end - begin));
        const std::regex column(R"(^\s+(\w+)\s+(float8|integer) NOT NULL DEFAULT (\S+)\s+CHECK \((.*)\),\s*$)");
        std::vector<SqlColumn> columns;
        std::string line;
        std::smatch m;
        while (std::getline(table, line))
            if (std::regex_match(line, m, column) &&
                std::find(not_parameters.begin(), not_parameters.end(), m[1].str()) == not_parameters.end())
                columns.push_back({m[1], m[2], m[3], m[4]});
        return columns;
    }
    *where = "";
    return {};
}

// The CHECK a range stands for, as the table writes it.
std::string sql_check(const es_param_range &range, const std::string &c) {
    const std::string lo = range.lo_text, hi = range.hi_text;
    switch (range.rule) {
        case ES_PARAM_BETWEEN:
        case ES_PARAM_INTEGER:
            return c + " BETWEEN " + lo + " AND " + hi;
        case ES_PARAM_ABOVE:
            return c + " > " + lo + " AND " + c + " <= " + hi;
    }
    return "?";
}

TEST(ProfileParams, ListTheSqlTablesColumnsDefaultsAndChecks) {
    std::string path;
    const std::vector<SqlColumn> sql = sql_profile_columns(&path);
    ASSERT_EQ(sql.size(), 34u) << "the CREATE TABLE of scoring_profiles in src/sql/schema.sql "
                                  "(run from the repository root), read from '"
                               << path << "'";
    ASSERT_EQ(kParams.size(), sql.size());
    for (size_t i = 0; i < sql.size(); ++i) {
        EXPECT_EQ(kParams[i].column, sql[i].name) << "parameter " << i;
        EXPECT_EQ(kParams[i].range.rule == ES_PARAM_INTEGER ? "integer" : "float8", sql[i].type) << sql[i].name;
        EXPECT_EQ(kParams[i].default_value, std::strtod(sql[i].default_text.c_str(), nullptr)) << sql[i].name;
        EXPECT_EQ(sql_check(kParams[i].range, sql[i].name), sql[i].check) << sql[i].name;
    }
}

TEST(ProfileParams, IntervalColumnsAreBoundedTo100Years) {
    // now() - max_score_age (a refresh, readable_scores) and a run's start - refresh_log_retention
    // stay timestamps: each interval at most 100 years, and so is each of its fields (a sum of
    // fields of opposite signs can be small while each is not).
    std::string path, sql;
    for (std::string up; sql.empty() && up.size() < 18; up += "../") {
        std::ifstream in(up + "src/sql/schema.sql");
        if (!in) continue;
        std::stringstream text;
        text << in.rdbuf();
        sql = text.str();
    }
    ASSERT_FALSE(sql.empty()) << "src/sql/schema.sql (run from the repository root)";
    const size_t table = sql.find("CREATE TABLE @extschema@.scoring_profiles (");
    ASSERT_NE(table, std::string::npos);
    for (const std::string &c : {std::string("max_score_age"), std::string("refresh_log_retention")}) {
        const size_t begin = sql.find("\n    " + c + " ", table);
        ASSERT_NE(begin, std::string::npos) << c;
        const std::string column = sql.substr(begin, sql.find("),\n", begin) - begin);
        for (const std::string &want :
             {c + " <= interval '100 years'", "abs(extract(year FROM " + c + ")) <= 100",
              "abs(extract(day FROM " + c + ")) <= 36525", "abs(extract(hour FROM " + c + ")) <= 876600"})
            EXPECT_NE(column.find(want), std::string::npos) << c << ": " << want << " in\n" << column;
    }
}

TEST(ProfileParams, RangesAreFiniteAndHoldTheirDefaults) {
    for (const Param &p : kParams) {
        const es_param_range &r = p.range;
        // The text (in the SQL CHECK too) is the double the kernel compares with.
        EXPECT_EQ(std::strtod(r.lo_text, nullptr), r.lo) << p.column;
        EXPECT_EQ(std::strtod(r.hi_text, nullptr), r.hi) << p.column;
        EXPECT_TRUE(std::isfinite(r.lo) && std::isfinite(r.hi) && r.lo < r.hi) << p.column;
        EXPECT_TRUE(r.rule == ES_PARAM_ABOVE ? p.default_value > r.lo : p.default_value >= r.lo) << p.column;
        EXPECT_LE(p.default_value, r.hi) << p.column;
    }
}

TEST(ProfileParams, MembersAreTheColumnsFields) {
    // Offsets in order are asserted at compile time; here each column fills the field of its name.
    for (size_t i = 0; i < kParams.size(); ++i) {
        const Param &p = kParams[i];
        EXPECT_EQ(p.offset, i * sizeof(double)) << p.column;
        const std::string decay = "decay_weight_";
        if (p.column.compare(0, decay.size(), decay) == 0) {
            int type = 0;
            while (type < ES_EVENT_TYPES && p.column.substr(decay.size()) != es_event_type_name(type)) ++type;
            ASSERT_LT(type, ES_EVENT_TYPES) << p.column;
            EXPECT_EQ(p.offset, offsetof(es_profile, type_weight) + type * sizeof(double)) << p.column;
        } else {
            EXPECT_EQ(p.member, p.column);
        }
    }
}

TEST(ProfileParams, ColumnsStringIsTheGluesList) {
    // The list the glue reads a profile row with (profile_columns in src/glue/profiles.c): every
    // parameter as a double, the integer undeliverable_after too.
    std::string want;
    for (const char *c :
         {"lookback_days", "recency_tau_days", "frequency_min_days", "frequency_ref_rate", "monetary_ref_value",
          "half_life_days", "time_decay_ref", "decay_weight_delivered", "decay_weight_opened", "decay_weight_clicked",
          "decay_weight_responded", "decay_weight_converted", "decay_weight_opted_out", "decay_weight_opted_in",
          "decay_weight_bounced", "weight_recency", "weight_frequency", "weight_monetary", "weight_time_decay",
          "weight_diversity", "opt_out_penalty", "undeliverable_penalty", "undeliverable_after", "new_contact_days",
          "model_r", "model_alpha", "model_a", "model_b", "horizon_days", "conv_prior_a", "conv_prior_b", "gg_p", "gg_q",
          "gg_v"})
        want += std::string(c) + "::pg_catalog.float8, ";
    EXPECT_EQ(ES_PROFILE_COLUMNS "name", want + "name");
}

TEST(ProfileParams, DefaultProfileIsTheModelsDefaults) {
    // docs/model.md's defaults, field by field.
    es_profile want;
    std::memset(&want, 0, sizeof want);
    want.lookback_days = 365;
    want.recency_tau_days = 30;
    want.frequency_min_days = 30;
    want.frequency_ref_rate = 0.1;
    want.monetary_ref_value = 1000;
    want.half_life_days = 14;
    want.time_decay_ref = 5;
    const double weights[ES_EVENT_TYPES] = {0, 1, 2, 3, 10, -10, 0, -1};
    std::memcpy(want.type_weight, weights, sizeof weights);
    want.weight_recency = 0.30;
    want.weight_frequency = 0.25;
    want.weight_monetary = 0.20;
    want.weight_time_decay = 0.15;
    want.weight_diversity = 0.10;
    want.opt_out_penalty = 0.9;
    want.undeliverable_penalty = 0.9;
    want.undeliverable_after = 3;
    want.new_contact_days = 30;
    want.model_r = 0.25;
    want.model_alpha = 10;
    want.model_a = 0.5;
    want.model_b = 2.5;
    want.horizon_days = 30;
    want.conv_prior_a = 1;
    want.conv_prior_b = 9;
    want.gg_p = 6.25;
    want.gg_q = 3.74;
    want.gg_v = 15.44;
    const es_profile got = es_default_profile();
    EXPECT_EQ(std::memcmp(&got, &want, sizeof want), 0);
}

TEST(ProfileParams, EveryParameterIsCheckedByItsRange) {
    // Each bound, the doubles either side of it, and values no range holds.
    for (const Param &param : kParams) {
        const es_param_range &r = param.range;
        const double down = -INFINITY, up = INFINITY;
        const bool integer = r.rule == ES_PARAM_INTEGER;  // the doubles between integers are refused
        const struct {
            double value;
            bool accepted;
        } cases[] = {
            {r.lo, r.rule != ES_PARAM_ABOVE},
            {std::nextafter(r.lo, down), false},
            {std::nextafter(r.lo, up), !integer},
            {r.hi, true},
            {std::nextafter(r.hi, down), !integer},
            {integer ? r.lo + 1 : r.hi, true},
            {integer ? r.hi - 0.5 : r.hi, !integer},
            {std::nextafter(r.hi, up), false},
            {param.default_value, true},
            {1e308, false},
            {-1e308, false},
            {NAN, false},
            {INFINITY, false},
            {-INFINITY, false},
        };
        for (const auto &c : cases) {
            es_profile p = es_default_profile();
            field(p, param) = c.value;
            // Keep the cross-column rules satisfied, so only this parameter's own range decides.
            if (param.column == "frequency_min_days") p.lookback_days = 1e9;
            if (param.column == "lookback_days") p.frequency_min_days = 1e-6;
            char err[256] = "";
            const int status = es_validate_profile(&p, err, sizeof err);
            const std::string msg = err;
            if (c.accepted) {
                // A changed composite weight breaks the weights' sum, and only that.
                const bool composite_weight = param.column.rfind("weight_", 0) == 0;
                const bool sum_broken = msg.rfind("the component weights must sum to 1", 0) == 0;
                EXPECT_TRUE(status == ES_OK || (composite_weight && sum_broken))
                    << param.column << " = " << c.value << ": " << msg;
            } else {
                EXPECT_EQ(status, ES_INVALID_PARAMETER) << param.column << " = " << c.value;
                EXPECT_EQ(msg.rfind(param.column + " must be ", 0), 0u) << msg;  // names the parameter first
            }
        }
    }
}

TEST(ProfileParams, ValidationMessages) {
    char err[256];
    es_profile p = es_default_profile();
    p.lookback_days = NAN;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "lookback_days must be between 1e-6 and 1e9, not nan");
    p = es_default_profile();
    p.type_weight[ES_BOUNCED] = -INFINITY;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "decay_weight_bounced must be between -1e6 and 1e6, not -inf");
    // issue 29: a weight that made the time-decay sum overflow (NaN composite), and a population
    // mean that is infinite.
    p = es_default_profile();
    p.type_weight[ES_OPENED] = 1e308;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "decay_weight_opened must be between -1e6 and 1e6, not 1e+308");
    p = es_default_profile();
    p.gg_q = 1;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "gg_q must be greater than 1 and at most 1e9, not 1");
    p = es_default_profile();
    p.weight_monetary = -0.5;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "weight_monetary must be between 0 and 1, not -0.5");
    p = es_default_profile();
    p.opt_out_penalty = 1.5;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "opt_out_penalty must be between 0 and 1, not 1.5");
    p = es_default_profile();
    p.frequency_min_days = 400;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "frequency_min_days (400) must not exceed lookback_days (365)");
    p = es_default_profile();
    p.weight_recency = 0.9;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "the component weights must sum to 1 (within 1e-9), not 1.5999999999999999");
    // The parameters of model version 3.
    p = es_default_profile();
    p.undeliverable_after = 2.5;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "undeliverable_after must be an integer between 1 and 10, not 2.5");
    p.undeliverable_after = 0;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "undeliverable_after must be an integer between 1 and 10, not 0");
    p.undeliverable_after = 11;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "undeliverable_after must be an integer between 1 and 10, not 11");
    p.undeliverable_after = NAN;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "undeliverable_after must be an integer between 1 and 10, not nan");
    for (double k = 1; k <= 10; ++k) {
        p.undeliverable_after = k;
        EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK) << err;
    }
    p = es_default_profile();
    p.undeliverable_penalty = -0.1;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "undeliverable_penalty must be between 0 and 1, not -0.1");
    p = es_default_profile();
    p.new_contact_days = 0;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "new_contact_days must be between 1e-6 and 1e9, not 0");
    p = es_default_profile();
    p.type_weight[ES_OPTED_IN] = 2e6;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_INVALID_PARAMETER);
    EXPECT_STREQ(err, "decay_weight_opted_in must be between -1e6 and 1e6, not 2e+06");
    // A penalty of 0 or 1 and weights (1, 0, 0, 0, 0) are valid: the bounds are inclusive.
    p = es_default_profile();
    p.opt_out_penalty = 1;
    p.undeliverable_penalty = 1;
    p.weight_recency = 1;
    p.weight_frequency = p.weight_monetary = p.weight_time_decay = p.weight_diversity = 0;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK) << err;
    p.opt_out_penalty = 0;
    p.undeliverable_penalty = 0;
    EXPECT_EQ(es_validate_profile(&p, err, sizeof err), ES_OK) << err;
}

TEST(ProfileParams, Version3ParametersAndDefaults) {
    // Where the parameters of model version 3 sit (the order of their columns too), and the
    // default profile's values (frequency_min_days 30 since version 3).
    std::vector<std::string> columns;
    for (const Param &p : kParams) columns.push_back(p.column);
    auto after = [&](const std::string &c) {
        const auto it = std::find(columns.begin(), columns.end(), c);
        return it == columns.end() || it + 1 == columns.end() ? std::string() : *(it + 1);
    };
    EXPECT_EQ(after("decay_weight_opted_out"), "decay_weight_opted_in");
    EXPECT_EQ(after("decay_weight_opted_in"), "decay_weight_bounced");
    EXPECT_EQ(after("opt_out_penalty"), "undeliverable_penalty");
    EXPECT_EQ(after("undeliverable_penalty"), "undeliverable_after");
    EXPECT_EQ(after("undeliverable_after"), "new_contact_days");
    EXPECT_EQ(after("new_contact_days"), "model_r");
    const es_profile d = es_default_profile();
    EXPECT_EQ(d.frequency_min_days, 30.0);
    EXPECT_EQ(d.type_weight[ES_OPTED_IN], 0.0);
    EXPECT_EQ(d.undeliverable_after, 3.0);
    EXPECT_EQ(d.undeliverable_penalty, 0.9);
    EXPECT_EQ(d.new_contact_days, 30.0);
    for (const Param &p : kParams)
        EXPECT_EQ(p.range.rule == ES_PARAM_INTEGER, p.column == "undeliverable_after") << p.column;
}

}  // namespace
