-- scripts/screen.lua — a virtual screen: dock every ligand of a library into one
-- receptor (vl.dock.screen), rank them, keep the best poses.
--
--   build/vlua scripts/screen.lua                  -- demo: the 20 reference crystal ligands vs 1iep
--   build/vlua scripts/screen.lua --receptor rec.pdbqt --library lib.sdf --box box.txt --out hits
--   build/vlua scripts/screen.lua --receptor rec.pdbqt --library ligands/ --box-around ref.sdf --out hits
--
-- Library: a multi-molecule SDF (each record prepared like `obabel -h -O x.pdbqt`),
-- a MOL2, a multi-MODEL PDBQT, or a folder of .sdf/.mol/.mol2/.pdbqt files.
-- Output folder (--out): results.csv (ranked by best affinity; failed ligands
-- last with the reason), top.sdf and top.pdbqt (best pose of the --top best
-- ligands), poses/RANK_NAME.sdf|.pdbqt (all modes), screen.journal (the
-- checkpoint). Everything is written atomically; the journal gets one line per
-- ligand, fsynced before the next one starts. Run the same command again after a
-- crash or Ctrl-C (exit status 130) and the screen resumes (--no-resume starts over).
--
-- With no arguments: the demo screens the crystal ligands of the 20 complexes
-- in ../shared/data/complexes (next to the project folder; --complexes DIR
-- elsewhere) against 1iep's receptor and box at exhaustiveness 4 (the demo's
-- default: about 2 minutes on 2 busy cores; Vina's 8 takes twice that), into
-- screen_demo/.
--
-- Flags: --receptor PATH, --library PATH, --box PATH (Vina config: center_x ...
-- size_z), --box-around LIGAND_FILE [--padding 4], --out DIR, --exhaustiveness N (8),
-- --seed S (1), --top N (10), --threads N, --num-modes N (9), --energy-range X (3),
-- --resume (default) / --no-resume, --local-only (no search: dock.dock_local,
-- a local optimisation of the input conformation centred in the box), --quiet,
-- --complexes DIR, --help. Testing aid: --stop-after N exits hard (os.exit, no
-- cleanup) after the N-th ligand's journal line, as a crash there would.
local vl = require "vl"
local dock = require "vl.dock"

local fmt = string.format
local DEMO_RECEPTOR = "1iep"
local DEMO_EXHAUSTIVENESS = 4

local function usage(code)
  io.stderr:write([[
usage: vlua scripts/screen.lua [--receptor rec.pdbqt --library lib.sdf|dir --box box.txt --out DIR]
       [--box-around ligand.sdf --padding 4] [--exhaustiveness 8] [--seed 1] [--top 10]
       [--threads N] [--num-modes 9] [--energy-range 3] [--resume | --no-resume]
       [--local-only] [--quiet] [--complexes DIR] [--stop-after N]
with no arguments: the demo (20 reference crystal ligands against 1iep)
]])
  os.exit(code)
end

local function die(msg)
  io.stderr:write("screen: ", msg, "\n")
  os.exit(2)
end

local VALUE = {receptor = "s", library = "s", box = "s", ["box-around"] = "s", padding = "n", out = "s",
  exhaustiveness = "i", seed = "i", top = "i", threads = "i", ["num-modes"] = "i", ["energy-range"] = "n",
  complexes = "s", ["stop-after"] = "i"}
local FLAG = {resume = true, ["no-resume"] = true, ["local-only"] = true, quiet = true, help = true}

local function parse_args(argv)
  local a, i = {}, 1
  while i <= #argv do
    local s = argv[i]
    local k, v = s:match("^%-%-([%w%-]+)=(.*)$")
    if not k then k = s:match("^%-%-([%w%-]+)$") end
    if not k then die(fmt("unexpected argument '%s' (see --help)", s)) end
    if FLAG[k] then
      if v then die(fmt("--%s takes no value", k)) end
      a[k] = true
    elseif VALUE[k] then
      if not v then
        i = i + 1
        v = argv[i]
        if v == nil then die(fmt("--%s needs a value", k)) end
      end
      if VALUE[k] ~= "s" then
        local n = tonumber(v)
        if not n or (VALUE[k] == "i" and n ~= math.floor(n)) then
          die(fmt("--%s %s: expected %s", k, v, VALUE[k] == "i" and "an integer" or "a number"))
        end
        v = VALUE[k] == "i" and math.tointeger(n) or n
      end
      a[k] = v
    else
      die(fmt("unknown flag --%s (see --help)", k))
    end
    i = i + 1
  end
  return a
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- The project root: the folder above scripts/ (this file's folder).
local function project_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/scripts/[^/]*$") or (src:match("^@scripts/") and ".")
  return dir or "."
end

local args = parse_args(arg)
if args.help then usage(0) end

local demo = args.receptor == nil and args.library == nil
local opts = {}
if demo then
  local dir = args.complexes or (project_root() .. "/../shared/data/complexes")
  local h = io.popen("cd -- '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null && pwd")
  local abs = h and h:read("l")
  if h then h:close() end
  if abs and abs ~= "" then dir = abs end
  if not exists(dir .. "/README.md") or not exists(dir .. "/" .. DEMO_RECEPTOR .. "/receptor.pdbqt") then
    die(fmt("demo: the reference complexes are not at %s (expected ../shared/data/complexes next to the project; " ..
      "give --complexes DIR, or --receptor/--library/--box for your own screen)", dir))
  end
  local ids = {}
  local h = io.popen("ls -1 -- '" .. dir:gsub("'", "'\\''") .. "'")
  for n in h:lines() do
    if exists(dir .. "/" .. n .. "/ligand.sdf") then ids[#ids + 1] = n end
  end
  h:close()
  table.sort(ids)
  local out = args.out or "screen_demo"
  os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
  -- the library: every crystal ligand, titled with its complex's id
  local parts = {}
  for _, id in ipairs(ids) do
    local f = assert(io.open(dir .. "/" .. id .. "/ligand.sdf", "rb"))
    local text = f:read("a")
    f:close()
    text = text:gsub("^[^\n]*", id, 1)
    if not text:match("%$%$%$%$%s*$") then text = text:gsub("\n?$", "\n$$$$\n", 1) end
    parts[#parts + 1] = text
  end
  local lib = out .. "/demo_library.sdf"
  vl.write_file(lib, table.concat(parts))
  opts.receptor = dir .. "/" .. DEMO_RECEPTOR .. "/receptor.pdbqt"
  opts.box = dir .. "/" .. DEMO_RECEPTOR .. "/box.txt"
  opts.library = lib
  opts.out = out
  opts.exhaustiveness = args.exhaustiveness or DEMO_EXHAUSTIVENESS
  print(fmt("demo: %d crystal ligands of %s docked into %s's receptor (box %s), exhaustiveness %d%s",
    #ids, dir, DEMO_RECEPTOR, opts.box, opts.exhaustiveness,
    args.exhaustiveness and "" or " (the demo's default; --exhaustiveness 8 is Vina's)"))
else
  for _, k in ipairs {"receptor", "library", "out"} do
    if not args[k] then die(fmt("--%s is required (see --help)", k)) end
  end
  if not args.box and not args["box-around"] then die("--box box.txt or --box-around ligand.sdf is required") end
  opts.receptor, opts.library, opts.out = args.receptor, args.library, args.out
  opts.exhaustiveness = args.exhaustiveness
end
if args["box-around"] then
  local p = args["box-around"]
  local ok, res = pcall(function()
    local ext = p:match("%.([^./]*)$")
    ext = ext and ext:lower()
    if ext == "pdbqt" then return dock.box_around(dock.ligand(p), args.padding) end
    local chems = ext == "mol2" and vl.dock.read_mol2(p) or ext == "pdb" and {vl.dock.read_pdb(p)} or vl.dock.read_sdf(p)
    return dock.box_around(chems[1], args.padding)
  end)
  if not ok then die("--box-around: " .. tostring(res)) end
  opts.box = res
elseif args.box then
  opts.box = args.box
end
opts.seed, opts.top, opts.threads = args.seed, args.top, args.threads
if args.threads then
  if args.threads < 1 then die("--threads must be >= 1") end
  vl.set_num_threads(args.threads) -- the grid maps too, not only the search
end
opts.num_modes, opts.energy_range = args["num-modes"], args["energy-range"]
opts.stop_after = args["stop-after"]
if args["no-resume"] then opts.resume = false end
if args.quiet then opts.progress = false end
if args["local-only"] then
  opts.dock_fn = dock.dock_local
elseif not rawget(dock, "dock") then
  die("dock.dock (the Monte Carlo search) is not in this build; --local-only runs local optimisation only")
end

local t0 = vl.monotonic()
local ok, list, summary = pcall(dock.screen, opts)
if not ok then
  if tostring(list):find("interrupted!", 1, true) then
    io.stderr:write("\nscreen: interrupted; run the same command again to resume\n")
    os.exit(130)
  end
  die(tostring(list))
end
local secs = vl.monotonic() - t0
print(fmt("%d ligands (%d docked now, %d from the checkpoint, %d failed) in %.1f s", summary.total, summary.docked,
  summary.resumed, summary.failed, secs))
print(fmt("%-5s %-24s %10s %8s %6s", "rank", "name", "affinity", "torsions", "heavy"))
for rank, r in ipairs(list) do
  if rank > math.max(opts.top or 10, 10) then break end
  if r.status == "ok" then
    print(fmt("%-5d %-24s %10.3f %8d %6d", rank, r.name:sub(1, 24), r.affinity, r.ntors or 0, r.heavy or 0))
  else
    print(fmt("%-5d %-24s %10s  %s", rank, r.name:sub(1, 24), "failed", r.error or ""))
  end
end
print(fmt("results: %s; top poses: %s/top.sdf, %s/top.pdbqt, %s/poses/", summary.results, summary.out, summary.out,
  summary.out))
