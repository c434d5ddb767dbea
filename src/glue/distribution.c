/*
 * distribution.c: score distributions, the sorted composites of a profile's scores packed as
 * float8s in a bytea stored uncompressed out of line (STORAGE EXTERNAL), so a percentile is a
 * binary search that fetches a handful of TOAST slices instead of the whole array or the scores
 * table.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"

static int
float8_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/*
 * A float8[]'s values, sorted, as a bytea of native float8s: the form of a distribution.  It
 * holds no NULL, and no NaN (qsort needs a total order).
 */
static bytea *
sorted_distribution(ArrayType *arr)
{
	int			n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	bytea	   *out;
	double	   *v;
	int			i;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		elog(ERROR, "expected float8[]");
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a score distribution cannot hold NULL")));
	out = palloc(VARHDRSZ + (Size) n * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) n * sizeof(double));
	v = (double *) VARDATA(out);
	if (n > 0)
		memcpy(v, ARR_DATA_PTR(arr), (Size) n * sizeof(double));
	for (i = 0; i < n; i++)
		if (isnan(v[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a score distribution cannot hold NaN")));
	qsort(v, n, sizeof(double), float8_cmp);
	return out;
}

/* _pack_sorted(float8[]): the array's values as a distribution. */
PG_FUNCTION_INFO_V1(es_pack_sorted);
Datum
es_pack_sorted(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(sorted_distribution(PG_GETARG_ARRAYTYPE_P(0)));
}

/* A distribution detoasted once per query, for _count_below over many rows. */
typedef struct DistributionCache
{
	Oid			toastrelid;
	Oid			valueid;
	int64		n;
	double	   *values;
} DistributionCache;

/*
 * _count_below(sorted bytea, score): how many values of the distribution are < score.
 * One call (score_percentile) binary-searches through TOAST slices; many calls over the same
 * stored value (a refresh's percentile UPDATE) detoast it once and search memory.
 */
PG_FUNCTION_INFO_V1(es_count_below);
Datum
es_count_below(PG_FUNCTION_ARGS)
{
	Datum		packed = PG_GETARG_DATUM(0);
	double		score = PG_GETARG_FLOAT8(1);
	struct varlena *raw = (struct varlena *) DatumGetPointer(packed);
	int64		n = (int64) ((toast_raw_datum_size(packed) - VARHDRSZ) / sizeof(double));
	int64		lo = 0,
				hi = n;
	const double *whole = NULL;
	bool		sliceable = false;
	DistributionCache *cache = (DistributionCache *) fcinfo->flinfo->fn_extra;

	if (isnan(score))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("score must be a number, not NaN")));
	if (VARATT_IS_EXTERNAL_ONDISK(raw))
	{
		struct varatt_external toast_pointer;

		VARATT_EXTERNAL_GET_POINTER(toast_pointer, raw);
		if (cache != NULL && cache->toastrelid == toast_pointer.va_toastrelid &&
			cache->valueid == toast_pointer.va_valueid)
			whole = cache->values;	/* seen before in this query */
		else if (cache != NULL && !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer))
		{
			/* The second call on a new value: keep a detoasted copy for the rest. */
			bytea	   *copy = DatumGetByteaPCopy(packed);

			if (cache->values != NULL)
				pfree(cache->values);
			cache->values = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, (Size) n * sizeof(double));
			memcpy(cache->values, VARDATA_ANY(copy), (Size) n * sizeof(double));
			pfree(copy);
			cache->toastrelid = toast_pointer.va_toastrelid;
			cache->valueid = toast_pointer.va_valueid;
			cache->n = n;
			whole = cache->values;
		}
		else
		{
			sliceable = !VARATT_EXTERNAL_IS_COMPRESSED(toast_pointer);
			if (cache == NULL)
				fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(DistributionCache));
		}
	}
	if (whole == NULL && !sliceable)
		whole = (const double *) VARDATA_ANY(PG_DETOAST_DATUM_PACKED(packed));

	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		double		v;

		if (whole != NULL)
			memcpy(&v, whole + mid, sizeof v);
		else
		{
			bytea	   *slice = DatumGetByteaPSlice(packed, (int32) (mid * sizeof(double)), sizeof(double));

			memcpy(&v, VARDATA_ANY(slice), sizeof v);
			pfree(slice);
		}
		if (v < score)
			lo = mid + 1;
		else
			hi = mid;
	}
	PG_RETURN_INT64(lo);
}

/*
 * _merge_distribution(sorted bytea, removed float8[], added float8[]): the distribution with
 * one occurrence of each removed value taken out and the added values merged in, in one pass
 * (an incremental refresh changes a few contacts of many).  A removed value that is not there
 * is an error: the distribution and the scores table disagree.
 */
PG_FUNCTION_INFO_V1(es_merge_distribution);
Datum
es_merge_distribution(PG_FUNCTION_ARGS)
{
	bytea	   *old = PG_GETARG_BYTEA_PP(0);
	int64		nold = VARSIZE_ANY_EXHDR(old) / sizeof(double);
	const double *ov = (const double *) VARDATA_ANY(old);
	bytea	   *removed = sorted_distribution(PG_GETARG_ARRAYTYPE_P(1));
	bytea	   *added = sorted_distribution(PG_GETARG_ARRAYTYPE_P(2));
	const double *rem = (const double *) VARDATA(removed);
	const double *add = (const double *) VARDATA(added);
	int			nrem = (int) ((VARSIZE(removed) - VARHDRSZ) / sizeof(double));
	int			nadd = (int) ((VARSIZE(added) - VARHDRSZ) / sizeof(double));
	int64		nout = nold - nrem + nadd;
	bytea	   *out;
	double	   *o;
	int64		i = 0,
				k = 0,
				r = 0,
				a = 0;

	if (nout < 0)
		elog(ERROR, "score distribution out of step with the scores: %d removed of " INT64_FORMAT, nrem, nold);
	out = palloc(VARHDRSZ + (Size) nout * sizeof(double));
	SET_VARSIZE(out, VARHDRSZ + (Size) nout * sizeof(double));
	o = (double *) VARDATA(out);
	while (i < nold || a < nadd)
	{
		double		v;

		if (i < nold && (a >= nadd || ov[i] <= add[a]))
		{
			memcpy(&v, ov + i, sizeof v);
			i++;
			/* skip it if it is the next value to remove (both sorted) */
			if (r < nrem && rem[r] < v)
				elog(ERROR, "score distribution out of step with the scores: %g is not in it", rem[r]);
			if (r < nrem && rem[r] == v)
			{
				r++;
				continue;
			}
		}
		else
			v = add[a++];
		if (k >= nout)
			elog(ERROR, "score distribution out of step with the scores");
		o[k++] = v;
	}
	if (r < nrem || k != nout)
		elog(ERROR, "score distribution out of step with the scores: %d of %d removed values not found",
			 nrem - (int) r, nrem);
	PG_RETURN_BYTEA_P(out);
}
