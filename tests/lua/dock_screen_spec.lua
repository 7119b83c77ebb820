-- dock_screen_spec.lua — virtual screening: dock.library (streaming ligand
-- libraries with errors as values), dock.box_around, dock.screen (ranked CSV,
-- top poses, checkpoint and resume, bad ligands) and scripts/screen.lua.
-- Libraries: tests/fixtures/dock_screen/ (scripts/fixtures/dock_screen.sh: the
-- reference crystal ligands of ../shared/data/complexes with one broken record
-- each). Receptor and box: 1iep from ../shared/data/complexes.
-- Most screens use dock.dock_local (a real local optimisation of each ligand
-- centred in the box, deterministic and fast) as the docking function; one
-- uses dock.dock (the Monte Carlo search) at exhaustiveness 1.
-- References: the written poses are rescored independently (dock.score on the
-- PDBQT read back must give the CSV's affinity), SDF heavy atoms must sit on
-- the PDBQT's, merged hydrogens keep their bond lengths, and a resumed screen
-- must equal an uninterrupted one.
local vl = require "vl"
local dock = require "vl.dock"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
local DATA = "../shared/data/complexes/"
local FX = "tests/fixtures/dock_screen/"
local REC = DATA .. "1iep/receptor.pdbqt"
local BOX = DATA .. "1iep/box.txt"
local REC_OBJ = dock.receptor(REC) -- one object: its scorer (grid maps) is cached and shared by the screens below

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. q(p)))
  return p
end

local function rmdir(d) os.execute("rm -rf " .. q(d)) end

local function listdir(d)
  local h = io.popen("ls -A " .. q(d))
  local names = {}
  for line in h:lines() do names[#names + 1] = line end
  h:close()
  table.sort(names)
  return names
end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local function read_csv(path)
  local rows, header = {}, nil
  for line in slurp(path):gmatch("([^\n]*)\n") do
    local f = {}
    -- fields: quoted ("" escapes) or plain
    local i = 1
    while i <= #line + 1 do
      if line:sub(i, i) == '"' then
        local j, s = i + 1, {}
        while true do
          local c = line:sub(j, j)
          if c == '"' then
            if line:sub(j + 1, j + 1) == '"' then s[#s + 1] = '"'; j = j + 2 else j = j + 1 break end
          else
            s[#s + 1] = c; j = j + 1
          end
        end
        f[#f + 1] = table.concat(s)
        i = j + 1
      else
        local j = line:find(",", i, true) or #line + 1
        f[#f + 1] = line:sub(i, j - 1)
        i = j + 1
      end
    end
    if not header then header = f else
      local r = {}
      for k, name in ipairs(header) do r[name] = f[k] end
      rows[#rows + 1] = r
    end
  end
  return rows, header
end

-- The docking stand-in, counting calls (by ligand name through a side table).
local function counting(fn)
  local calls = {n = 0, names = {}}
  return function(rec, lig, box, opts)
    calls.n = calls.n + 1
    calls.names[#calls.names + 1] = tostring(lig)
    return fn(rec, lig, box, opts)
  end, calls
end

local quiet = io.open("/dev/null", "w")

-- Every hydrogen of `new` (a written pose) keeps its distances to the atoms
-- within two bonds of it, as in `orig` (the input record): it moved rigidly with
-- its heavy atom. Returns the number of hydrogens checked.
local function h_geometry_kept(orig, new)
  local oc, nc = orig:coords():totable(), new:coords():totable()
  local atoms = orig:atoms()
  local adj = {}
  for i = 1, #atoms do adj[i] = {} end
  for _, b in ipairs(orig:bonds()) do
    adj[b[1]][#adj[b[1]] + 1] = b[2]
    adj[b[2]][#adj[b[2]] + 1] = b[1]
  end
  local function d(c, i, j) return math.sqrt((c[i][1] - c[j][1]) ^ 2 + (c[i][2] - c[j][2]) ^ 2 + (c[i][3] - c[j][3]) ^ 2) end
  local nh = 0
  for h = 1, #atoms do
    if atoms[h].element == "H" then
      nh = nh + 1
      for _, a in ipairs(adj[h]) do
        assert.is_true(math.abs(d(oc, h, a) - d(nc, h, a)) < 2e-3, "H-X bond length changed")
        for _, n in ipairs(adj[a]) do
          if n ~= h then
            assert.is_true(math.abs(d(oc, h, n) - d(nc, h, n)) < 3e-3,
              ("H %d: distance to atom %d was %.4f, now %.4f"):format(h, n, d(oc, h, n), d(nc, h, n)))
          end
        end
      end
    end
  end
  return nh
end

describe("dock.library", function()
  it("streams a multi-molecule SDF, yielding a bad record's reason and going on", function()
    local got = {}
    -- dock.ligands is the issue's name for the same iterator
    for name, lig, err, index in dock.ligands(FX .. "lib.sdf") do got[#got + 1] = {name, lig, err, index} end
    assert.equals(5, #got)
    assert.same({"1iep", "184l", "1uw6", "4up5"}, {got[1][1], got[2][1], got[4][1], got[5][1]})
    for i, g in ipairs(got) do assert.equals(i, g[4]) end
    assert.is_nil(got[3][2])
    assert.is_truthy(got[3][3]:find("lib.sdf:317: the record ends after 3 of its 12 atoms", 1, true), got[3][3])
    -- prepared like obabel -h: 1iep has 37 heavy atoms and 6 torsions (README of the complexes)
    local info = got[1][2]:info()
    assert.equals(37, info.heavy_atoms)
    assert.equals(6, info.ntorsions)
    assert.is_nil(got[1][3])
  end)

  it("reads MOL2, multi-MODEL PDBQT and folders, each with its broken record", function()
    local names, errs = {}, {}
    for name, lig, err in dock.library(FX .. "lib.mol2") do names[#names + 1] = name; errs[#errs + 1] = err or false end
    assert.same({"665_401_2H7L", "lib#2", "665_401_2H7L"}, names)
    assert.is_truthy(errs[2]:find("lib.mol2:97:", 1, true), errs[2])
    assert.is_false(errs[1])
    names, errs = {}, {}
    local ligs = {}
    for name, lig, err in dock.library(FX .. "lib.pdbqt") do
      names[#names + 1] = name; errs[#errs + 1] = err or false; ligs[#ligs + 1] = lig or false
    end
    assert.same({"NCT", "4up5_ligand", "lib#3"}, names)
    assert.is_truthy(errs[3]:find("lib.pdbqt:78: missing TORSDOF", 1, true), errs[3])
    -- the same molecules as the PDBQT read whole
    local ref = dock.read_ligands(DATA .. "1uw6/ligand.pdbqt")[1]
    assert.equals(ref:info().natoms, ligs[1]:info().natoms)
    assert.equals(ref:coords()[3][2], ligs[1]:coords()[3][2])
    -- a folder: files in name order, names from the files
    local d = tmpdir()
    os.execute(("cp %s %s/b.pdbqt && cp %s %s/a.sdf && echo x > %s/notes.txt"):format(q(DATA .. "1uw6/ligand.pdbqt"),
      q(d), q(DATA .. "184l/ligand.sdf"), q(d), q(d)))
    names = {}
    for name, lig, err, index in dock.library(d) do
      assert.is_nil(err)
      assert.is_truthy(lig)
      names[#names + 1] = name .. "/" .. index
    end
    assert.same({"a/1", "b/2"}, names)
    rmdir(d)
  end)

  it("refuses what is not a library, clearly", function()
    fails("no such file or folder", dock.library, "/nonexistent/lib.sdf")
    fails("expected a path", dock.library, 3)
    local d = tmpdir()
    local f = assert(io.open(d .. "/x.txt", "w"))
    f:write("hello\n")
    f:close()
    fails("unknown ligand format '.txt'", dock.library, d .. "/x.txt")
    os.remove(d .. "/x.txt")
    fails("no .sdf, .mol, .mol2 or .pdbqt files", dock.library, d)
    rmdir(d)
  end)
end)

describe("dock.box_around", function()
  it("encloses the atoms plus the padding on each side (closed form)", function()
    local t = vl.tensor({{0, 1, 2}, {4, -1, 2}, {2, 3, 8}}, {dtype = "float64"})
    local b = dock.box_around(t, 4)
    assert.same({2, 1, 5}, b.center)
    assert.same({12, 12, 14}, b.size)
    local b0 = dock.box_around(t, 0)
    assert.same({4, 4, 6}, b0.size)
    -- a ligand: its own atoms, default padding 4
    local lig = dock.ligand(DATA .. "1uw6/ligand.pdbqt")
    local c = lig:coords():totable()
    local bl = dock.box_around(lig)
    for k = 1, 3 do
      local lo, hi = math.huge, -math.huge
      for _, p in ipairs(c) do lo = math.min(lo, p[k]); hi = math.max(hi, p[k]) end
      assert.is_true(math.abs(bl.center[k] - (lo + hi) / 2) < 1e-12)
      assert.is_true(math.abs(bl.size[k] - (hi - lo + 8)) < 1e-12)
    end
    -- the box scores the ligand in it
    local s = dock.score(dock.receptor(DATA .. "1uw6/receptor.pdbqt"), lig, {box = bl})
    assert.is_true(s.affinity < 0)
    fails("padding = -1", dock.box_around, t, -1)
    fails("expected a ligand", dock.box_around, "x")
    fails("no atoms", dock.box_around, {})
  end)
end)

describe("dock.screen", function()
  local out_a -- an uninterrupted screen, shared by the tests below
  local calls_a

  setup(function()
    out_a = tmpdir()
    local fn
    fn, calls_a = counting(dock.dock_local)
    dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out_a, top = 3, dock_fn = fn,
      progress = false, log = quiet}
  end)

  teardown(function() rmdir(out_a) end)

  it("writes a complete ranked CSV; the broken ligand is logged, not fatal", function()
    local rows, header = read_csv(out_a .. "/results.csv")
    assert.same({"rank", "name", "index", "affinity", "inter", "intra", "num_torsions", "heavy_atoms", "num_poses",
      "seconds", "status", "error"}, header)
    assert.equals(5, #rows)
    assert.equals(4, calls_a.n) -- every good ligand once, the broken one never
    local seen = {}
    for rank, r in ipairs(rows) do
      assert.equals(tostring(rank), r.rank)
      seen[tonumber(r.index)] = true
      if rank < 4 then assert.is_true(tonumber(r.affinity) <= tonumber(rows[rank + 1].affinity)) end
    end
    for i = 1, 5 do assert.is_true(seen[i]) end
    assert.equals("error", rows[5].status)
    assert.equals("3", rows[5].index)
    assert.is_truthy(rows[5].error:find("the record ends after 3 of its 12 atoms", 1, true))
    -- the crystal ligand of 1iep ranks first in its own pocket
    assert.equals("1iep", rows[1].name)
    assert.equals("37", rows[1].heavy_atoms)
    assert.equals("6", rows[1].num_torsions)
  end)

  it("writes top poses that read back and rescore to the CSV's affinity", function()
    local rows = read_csv(out_a .. "/results.csv")
    local rec, box = dock.receptor(REC), dock.box_from_file(BOX)
    -- top.pdbqt: the best pose of each of the 3 best ligands, Vina's layout
    local models = dock.read_ligands(out_a .. "/top.pdbqt")
    assert.equals(3, #models)
    local text = slurp(out_a .. "/top.pdbqt")
    local k = 0
    for e in text:gmatch("REMARK VINA RESULT:%s+(%S+)") do
      k = k + 1
      assert.equals(tonumber(rows[k].affinity), tonumber(e))
    end
    assert.equals(3, k)
    for i, m in ipairs(models) do
      local s = dock.score(rec, m, {box = box})
      -- independent rescoring of the written pose (3-decimal coordinates)
      assert.is_true(math.abs(s.affinity - tonumber(rows[i].affinity)) < 0.02,
        ("%s: rescored %.3f, csv %s"):format(rows[i].name, s.affinity, rows[i].affinity))
    end
    -- top.sdf: the same poses with every atom of the input record
    local chems = vl.dock.read_sdf(out_a .. "/top.sdf")
    assert.equals(3, #chems)
    for i, chem in ipairs(chems) do
      assert.equals(rows[i].name, chem:info().title)
      local p = chem:props()
      assert.equals(rows[i].affinity, p.minimizedAffinity)
      -- heavy atoms and polar H on the PDBQT pose's (the preparation's map)
      local lig, map = chem:prepare()
      local sc, mc = chem:coords():totable(), models[i]:coords():totable()
      local ma = models[i]:atoms()
      local la = lig:atoms()
      assert.equals(#ma, #la)
      for a = 1, #map do
        if map[a] > 0 then
          -- the pdbqt written from the same molecule keeps the atom order
          for kk = 1, 3 do assert.is_true(math.abs(sc[map[a]][kk] - mc[a][kk]) < 2e-3) end
        end
      end
    end
    -- merged hydrogens moved with their atoms: bond lengths as in the input
    local orig
    for chem in vl.dock.sdf_reader(FX .. "lib.sdf") do
      if chem:info().title == "1iep" then orig = chem break end
    end
    local top1 = chems[1]
    assert.equals("1iep", top1:info().title)
    assert.is_true(h_geometry_kept(orig, top1) >= 29)
    -- per-ligand files: every mode
    local rp = dock.read_ligands(out_a .. "/poses/001_1iep.pdbqt")
    assert.equals(1, #rp)
    assert.equals(1, #vl.dock.read_sdf(out_a .. "/poses/001_1iep.sdf"))
  end)

  it("leaves no temporary files", function()
    assert.same({"poses", "results.csv", "screen.journal", "top.pdbqt", "top.sdf"}, listdir(out_a))
    local p = listdir(out_a .. "/poses")
    assert.equals(6, #p)
    for _, n in ipairs(p) do assert.is_truthy(n:match("^00[123]_[%w_]+%.[sp]d[fb]q?t?$"), n) end
  end)

  it("resumes after a crash (a killed child process) with the uninterrupted results, docking nothing twice", function()
    local out_b = tmpdir()
    local cmd = ("%s scripts/screen.lua --receptor %s --library %s --box %s --out %s --top 3 --local-only --quiet " ..
      "--stop-after 2 >/dev/null 2>&1"):format(q(VLUA), q(REC), q(FX .. "lib.sdf"), q(BOX), q(out_b))
    local _, how, code = os.execute(cmd)
    assert.equals("exit", how)
    assert.equals(75, code) -- the hard exit after the 2nd journal line
    assert.same({"screen.journal"}, listdir(out_b))
    local lines = {}
    for l in slurp(out_b .. "/screen.journal"):gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(3, #lines) -- header + 2 ligands
    -- resume in this process, counting the docking calls
    local fn, calls = counting(dock.dock_local)
    local list, summary = dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out_b, top = 3,
      dock_fn = fn, progress = false, log = quiet}
    assert.equals(2, summary.resumed)
    assert.equals(3, summary.docked) -- 2 good ligands and the broken one (no docking call for it)
    assert.equals(2, calls.n)
    assert.equals(5, #list)
    -- the first two records (1iep, 184l) were not docked again
    for _, n in ipairs(calls.names) do assert.is_falsy(n:find("40 atoms", 1, true)) end
    -- equal to the uninterrupted screen (all but the timings)
    local ra, rb = read_csv(out_a .. "/results.csv"), read_csv(out_b .. "/results.csv")
    assert.equals(#ra, #rb)
    for i = 1, #ra do
      ra[i].seconds, rb[i].seconds = nil, nil
      assert.same(ra[i], rb[i])
    end
    assert.equals(slurp(out_a .. "/top.sdf"), slurp(out_b .. "/top.sdf"))
    assert.equals(slurp(out_a .. "/top.pdbqt"), slurp(out_b .. "/top.pdbqt"))
    -- a journal line torn by a crash during its write is dropped and that ligand docked again
    local j = slurp(out_b .. "/screen.journal")
    local keep = j:match("^(.-\n.-\n.-\n)") -- header + 2 records
    local torn = j:sub(#keep + 1, #keep + 40)
    local f = assert(io.open(out_b .. "/screen.journal", "wb"))
    f:write(keep, torn)
    f:close()
    fn, calls = counting(dock.dock_local)
    list, summary = dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out_b, top = 3,
      dock_fn = fn, progress = false, log = quiet}
    assert.equals(2, summary.resumed)
    assert.equals(2, calls.n)
    rb = read_csv(out_b .. "/results.csv")
    for i = 1, #ra do
      rb[i].seconds = nil
      assert.same(ra[i], rb[i])
    end
    -- a finished screen run again docks nothing
    fn, calls = counting(dock.dock_local)
    dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out_b, top = 3, dock_fn = fn,
      progress = false, log = quiet}
    assert.equals(0, calls.n)
    rmdir(out_b)
  end)

  it("resumes after SIGKILL at an arbitrary moment", function()
    if not os.execute("command -v timeout >/dev/null 2>&1") then return end
    local out_c = tmpdir()
    local cmd = ("timeout -s KILL 1.5 %s scripts/screen.lua --receptor %s --library %s --box %s --out %s --top 3 " ..
      "--local-only --quiet >/dev/null 2>&1"):format(q(VLUA), q(REC), q(FX .. "lib.sdf"), q(BOX), q(out_c))
    os.execute(cmd)
    local list = dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out_c, top = 3,
      dock_fn = dock.dock_local, progress = false, log = quiet}
    assert.equals(5, #list)
    local ra, rc = read_csv(out_a .. "/results.csv"), read_csv(out_c .. "/results.csv")
    for i = 1, #ra do
      ra[i].seconds, rc[i].seconds = nil, nil
      assert.same(ra[i], rc[i])
    end
    assert.equals(slurp(out_a .. "/top.sdf"), slurp(out_c .. "/top.sdf"))
    rmdir(out_c)
  end)

  it("records a docking failure and goes on", function()
    local out = tmpdir()
    local fn = function(rec, lig, box, opts)
      if lig:info().natoms == 10 then error("boom: no pose for this one") end
      return dock.dock_local(rec, lig, box, opts)
    end
    local msgs = {}
    local log = {write = function(_, s) msgs[#msgs + 1] = s end}
    local list, summary = dock.screen {receptor = REC_OBJ, library = FX .. "lib.sdf", box = BOX, out = out, top = 2,
      dock_fn = fn, progress = false, log = log}
    assert.equals(2, summary.failed)
    local rows = read_csv(out .. "/results.csv")
    assert.equals("error", rows[4].status)
    assert.equals("184l", rows[4].name)
    assert.is_truthy(rows[4].error:find("boom: no pose for this one", 1, true))
    assert.equals(2, #msgs)
    assert.is_truthy(table.concat(msgs):find("ligand 2 (184l) failed", 1, true))
    assert.equals(1, #list[1].poses)
    assert.equals(2, #vl.dock.read_sdf(out .. "/top.sdf"))
    -- poses stay in memory for the top 2 only (bounded memory); the CSV still counts them
    assert.is_truthy(list[2].poses[1].coords)
    assert.is_nil(list[3].poses[1].coords)
    assert.equals("1", rows[3].num_poses)
    rmdir(out)
  end)

  it("stops on Ctrl-C (the error 'interrupted!') without recording the ligand, and resumes", function()
    local out = tmpdir()
    local n = 0
    local fn = function(rec, lig, box, opts)
      n = n + 1
      if n == 2 then error("interrupted!") end
      return dock.dock_local(rec, lig, box, opts)
    end
    fails("interrupted!", dock.screen, {receptor = REC_OBJ, library = FX .. "lib.pdbqt", box = BOX, out = out,
      dock_fn = fn, progress = false, log = quiet})
    local lines = 0
    for _ in slurp(out .. "/screen.journal"):gmatch("\n") do lines = lines + 1 end
    assert.equals(2, lines) -- header + the first ligand
    local fn2, calls = counting(dock.dock_local)
    local list = dock.screen {receptor = REC_OBJ, library = FX .. "lib.pdbqt", box = BOX, out = out, dock_fn = fn2,
      progress = false, log = quiet}
    assert.equals(1, calls.n)
    assert.equals(3, #list)
    assert.equals("ok", list[2].status)
    -- a library edited between runs is refused, not mixed
    local lib = out .. "/lib.sdf"
    local text = slurp(FX .. "lib.sdf")
    local f = assert(io.open(lib, "w"))
    f:write(text)
    f:close()
    dock.screen {receptor = REC_OBJ, library = lib, box = BOX, out = out .. "/o", dock_fn = dock.dock_local,
      progress = false, log = quiet}
    f = assert(io.open(lib, "w"))
    f:write((text:gsub("^1iep\n", "other\n")))
    f:close()
    fails("record 1 of " .. lib .. " is now 'other', the journal says '1iep' (the library changed", dock.screen,
      {receptor = REC_OBJ, library = lib, box = BOX, out = out .. "/o", dock_fn = dock.dock_local, progress = false,
        log = quiet})
    rmdir(out)
  end)

  it("docks with dock.dock (the Monte Carlo search) by default", function()
    local out = tmpdir()
    -- 4up5's crystal ligand (6 hydrogens merged by the preparation) from the SDF library
    local rec4
    local next_rec = vl.dock.sdf_reader(FX .. "lib.sdf")
    while true do
      local ok, chem = pcall(next_rec) -- record 3 is the broken one
      if ok and chem == nil then break end
      if ok and chem:info().title == "4up5" then rec4 = chem break end
    end
    local text = slurp(FX .. "lib.sdf")
    local lib = out .. "/one.sdf"
    local f = assert(io.open(lib, "w"))
    f:write((text:match("\n(4up5\n.-%$%$%$%$\n)")))
    f:close()
    local list = dock.screen {receptor = REC_OBJ, library = lib, box = BOX, out = out .. "/o", top = 1,
      exhaustiveness = 1, seed = 3, progress = false, log = quiet}
    assert.equals(1, #list)
    assert.equals("ok", list[1].status)
    assert.is_true(#list[1].poses >= 2)
    -- modes sorted, the first with rmsd 0 to itself
    for p = 2, #list[1].poses do assert.is_true(list[1].poses[p].affinity >= list[1].poses[p - 1].affinity) end
    assert.equals(0, list[1].poses[1].rmsd_lb)
    local models = dock.read_ligands(out .. "/o/poses/001_4up5.pdbqt")
    assert.equals(#list[1].poses, #models)
    local chems = vl.dock.read_sdf(out .. "/o/poses/001_4up5.sdf")
    assert.equals(#list[1].poses, #chems)
    -- the search moved the ligand far from its input: hydrogens followed their atoms
    for _, c in ipairs(chems) do assert.equals(8, h_geometry_kept(rec4, c)) end
    -- and the modes rescore to their affinities
    local s = dock.score(REC_OBJ, models[2], {box = dock.box_from_file(BOX)})
    assert.is_true(math.abs(s.affinity - list[1].poses[2].affinity) < 0.02)
    rmdir(out)
  end)

  it("refuses bad options with clear errors", function()
    local ok_opts = {receptor = REC, library = FX .. "lib.sdf", box = BOX, out = "/tmp/never", dock_fn = dock.dock_local}
    local function with(k, v)
      local t = {}
      for a, b in pairs(ok_opts) do t[a] = b end
      t[k] = v
      return t
    end
    fails("expected a table of options", dock.screen, "x")
    fails("unknown option 'exhaustivness'", dock.screen, with("exhaustivness", 8))
    fails("option 'receptor' is required", dock.screen, with("receptor", nil))
    fails("option 'library' is required", dock.screen, with("library", nil))
    fails("option 'out' is required", dock.screen, with("out", nil))
    fails("option 'box' is required", dock.screen, with("box", nil))
    fails("library /nope.sdf: no such file or folder", dock.screen, with("library", "/nope.sdf"))
    fails("exhaustiveness = 0 (expected an integer >= 1)", dock.screen, with("exhaustiveness", 0))
    fails("exhaustiveness = 1.5 (expected an integer >= 1)", dock.screen, with("exhaustiveness", 1.5))
    fails("top = -1 (expected an integer >= 0)", dock.screen, with("top", -1))
    fails("threads = 0", dock.screen, with("threads", 0))
    fails("resume must be true or false", dock.screen, with("resume", "yes"))
    fails("dock_fn must be a function", dock.screen, with("dock_fn", 3))
    fails("box must be a table {center, size} or a path", dock.screen, with("box", 5))
    fails("box: ", dock.screen, with("box", "/nope/box.txt"))
    fails("dock.box: size[1] = -1", dock.screen, with("box", {center = {0, 0, 0}, size = {-1, 2, 2}}))
    fails("receptor: ", dock.screen, with("receptor", "/nope/rec.pdbqt"))
    fails("receptor must be a receptor PDBQT path or dock.receptor(path)", dock.screen,
      with("receptor", dock.ligand(DATA .. "1uw6/ligand.pdbqt")))
    -- a journal from other settings is not mixed in
    local out = tmpdir()
    dock.screen {receptor = REC_OBJ, library = FX .. "lib.pdbqt", box = BOX, out = out, dock_fn = dock.dock_local,
      progress = false, log = quiet}
    -- a PDBQT library has no SDF record: the SDF is made from the molecule
    local chems = vl.dock.read_sdf(out .. "/top.sdf")
    assert.equals(2, #chems)
    assert.equals(dock.ligand(DATA .. "4up5/ligand.pdbqt"):info().natoms, chems[1]:info().natoms)
    fails("holds a screen with other settings", dock.screen, {receptor = REC_OBJ, library = FX .. "lib.pdbqt", box = BOX,
      out = out, dock_fn = dock.dock_local, seed = 2, progress = false, log = quiet})
    -- resume = false starts over
    local fn, calls = counting(dock.dock_local)
    dock.screen {receptor = REC_OBJ, library = FX .. "lib.pdbqt", box = BOX, out = out, dock_fn = fn, seed = 2,
      resume = false, progress = false, log = quiet}
    assert.equals(2, calls.n)
    rmdir(out)
  end)
end)

describe("scripts/screen.lua", function()
  local function run(args)
    local p = io.popen(("%s scripts/screen.lua %s 2>&1; echo \"rc=$?\""):format(q(VLUA), args))
    local s = p:read("a")
    p:close()
    return s, tonumber(s:match("rc=(%d+)%s*$"))
  end

  it("screens with flags and prints the ranking", function()
    local out = tmpdir()
    local s, rc = run(("--receptor %s --library %s --box %s --out %s --top 2 --local-only --quiet"):format(q(REC),
      q(FX .. "lib.sdf"), q(BOX), q(out)))
    assert.equals(0, rc, s)
    assert.is_truthy(s:find("5 ligands (5 docked now, 0 from the checkpoint, 1 failed)", 1, true), s)
    assert.is_truthy(s:find("1     1iep", 1, true), s)
    assert.is_truthy(s:find("failed  tests/fixtures/dock_screen/lib.sdf:317", 1, true), s)
    assert.equals(2, #vl.dock.read_sdf(out .. "/top.sdf"))
    rmdir(out)
  end)

  it("gives clear errors for bad flags", function()
    local s, rc = run("--receptor x.pdbqt --library y.sdf --box b.txt --out /tmp/o --exhaustiveness two")
    assert.equals(2, rc)
    assert.is_truthy(s:find("--exhaustiveness two: expected an integer", 1, true), s)
    s, rc = run("--bogus 1")
    assert.equals(2, rc)
    assert.is_truthy(s:find("unknown flag --bogus", 1, true), s)
    s, rc = run("--receptor x.pdbqt --library y.sdf --out /tmp/o")
    assert.is_truthy(s:find("--box box.txt or --box-around ligand.sdf is required", 1, true), s)
    s, rc = run("--complexes /nonexistent --local-only")
    assert.equals(2, rc)
    assert.is_truthy(s:find("demo: the reference complexes are not at /nonexistent", 1, true), s)
  end)
end)
