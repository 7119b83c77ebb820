-- dock_mol_spec.lua — molecule files for docking: SDF (V2000/V3000), MOL2,
-- PDB readers, ligand preparation, PDBQT/SDF writers, symmetric RMSD.
-- References (tests/fixtures/dock_mol/, made by scripts/fixtures/dock_mol.sh):
-- the 20 reference complexes' crystal ligand.sdf with the PDBQT Open Babel
-- 3.1.1 wrote from it (`obabel ligand.sdf -h -O ligand.pdbqt`: types and
-- torsion tree), 2h7l's original MOL2, a V3000 rewrite of 1iep, and pose
-- pairs with Open Babel's obrms RMSD. Closed forms: RMSD of a translated
-- copy, symmetric swaps. Bad files are built here.
local vl = require "vl"
local D = vl.dock

local DIR = "tests/fixtures/dock_mol/"
local IDS = { "184l", "1g9v", "1ia1", "1iep", "1s3v", "1s63", "1uou", "1uw6", "1w1p", "1y6r", "2h7l", "3hl5",
  "3ws9", "4ap7", "4up5", "5ia3", "6ahs", "6g27", "6moa", "7w2p" }

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. q(p)))
  return p
end

local function listdir(d)
  local h = io.popen("ls -A " .. q(d))
  local names = {}
  for line in h:lines() do names[#names + 1] = line end
  h:close()
  table.sort(names)
  return names
end

local function rmdir(d) os.execute("rm -rf " .. q(d)) end

local function errmatch(fn, pat)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error matching " .. pat)
  if not tostring(err):find(pat) then error("error '" .. tostring(err) .. "' does not match '" .. pat .. "'", 2) end
end

local function dist(a, b)
  return math.sqrt((a.x - b.x) ^ 2 + (a.y - b.y) ^ 2 + (a.z - b.z) ^ 2)
end

-- Heavy atoms of `got` (a prepared Molecule) against `ref` (a Molecule read
-- from PDBQT), matched by coordinates: counts, unmatched, wrong types.
local function compare(got, ref)
  local ga, ra = got:atoms(), ref:atoms()
  local heavy_g, heavy_r, unmatched, wrong = 0, 0, 0, {}
  for _, a in ipairs(ga) do if a.element ~= "H" then heavy_g = heavy_g + 1 end end
  for _, r in ipairs(ra) do
    if r.element ~= "H" then
      heavy_r = heavy_r + 1
      local hit
      for _, a in ipairs(ga) do
        if a.element ~= "H" and dist(a, r) < 2e-3 then hit = a break end
      end
      if not hit then unmatched = unmatched + 1
      elseif hit.ad ~= r.ad then wrong[#wrong + 1] = r.serial .. ":" .. r.ad .. "/" .. hit.ad end
    end
  end
  return heavy_g, heavy_r, unmatched, wrong
end

describe("dock ligand preparation", function()
  it("types and torsions of the 20 reference ligands match obabel -h", function()
    for _, id in ipairs(IDS) do
      local chem = D.read_sdf(DIR .. id .. ".sdf")[1]
      local mol, map, info = chem:prepare()
      local ref = D.read_ligands(DIR .. id .. ".pdbqt")[1]
      local hg, hr, un, wrong = compare(mol, ref)
      assert.are.equal(hr, hg, id .. " heavy atoms")
      assert.are.equal(0, un, id .. " unmatched heavy atoms")
      assert.are.equal("", table.concat(wrong, " "), id .. " AutoDock types")
      assert.are.equal(ref:info().torsdof, mol:info().torsdof, id .. " TORSDOF")
      assert.are.equal(ref:info().ntorsions, mol:info().ntorsions, id .. " branches")
      assert.are.equal(info.torsions, mol:info().torsdof)
      -- the same tree: Vina's atom order, intramolecular pairs and Nrot
      local ma, rb = mol:atoms(), ref:atoms()
      assert.are.equal(#rb, #ma, id .. " atoms with polar H")
      for i = 1, #ma do
        assert.are.equal(rb[i].element, ma[i].element, id .. " atom " .. i)
        if ma[i].element ~= "H" then assert.is_true(dist(ma[i], rb[i]) < 2e-3, id .. " atom " .. i .. " position") end
      end
      assert.are.equal(ref:info().npairs, mol:info().npairs, id .. " intramolecular pairs")
      assert.are.equal(ref:info().nrot, mol:info().nrot, id .. " Nrot")
      -- polar hydrogens: the same count as obabel -h placed
      local function nhd(m)
        local n = 0
        for _, a in ipairs(m:atoms()) do if a.ad == "HD" then n = n + 1 end end
        return n
      end
      assert.are.equal(nhd(ref), nhd(mol), id .. " HD atoms")
      -- map: every heavy atom comes from the Chem atom at the same place
      local ca = chem:atoms()
      for i, a in ipairs(mol:atoms()) do
        if map[i] > 0 then
          local c = ca[map[i]]
          assert.is_true(math.abs(c.x - a.x) < 1e-3 and math.abs(c.y - a.y) < 1e-3 and math.abs(c.z - a.z) < 1e-3)
        else
          assert.are.equal("HD", a.ad)
        end
      end
    end
  end)

  it("types donors the same without explicit hydrogens", function()
    -- strip the H atoms (and their bonds) from SDFs that have them
    for _, id in ipairs({ "4up5", "1y6r", "3ws9", "2h7l", "6g27" }) do
      local lines = {}
      for l in (slurp(DIR .. id .. ".sdf") .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
      local na, nb = tonumber(lines[4]:sub(1, 3)), tonumber(lines[4]:sub(4, 6))
      local keep, new, atoms, bonds = {}, 0, {}, {}
      for i = 1, na do
        local l = lines[4 + i]
        if l:sub(32, 34):match("^%s*(%S+)") ~= "H" then
          new = new + 1
          keep[i] = new
          atoms[#atoms + 1] = l
        end
      end
      for k = 1, nb do
        local l = lines[4 + na + k]
        local a, b = keep[tonumber(l:sub(1, 3))], keep[tonumber(l:sub(4, 6))]
        if a and b then bonds[#bonds + 1] = string.format("%3d%3d%s", a, b, l:sub(7)) end
      end
      local text = table.concat({ lines[1], lines[2], lines[3],
        string.format("%3d%3d%s", #atoms, #bonds, lines[4]:sub(7)) }, "\n") .. "\n" ..
        table.concat(atoms, "\n") .. "\n" .. table.concat(bonds, "\n") .. "\nM  END\n$$$$\n"
      local chem = D.parse_sdf(text, id .. "-noH.sdf")[1]
      assert.are.equal(#atoms, chem:info().heavy_atoms)
      local mol, _, info = chem:prepare()
      local ref = D.read_ligands(DIR .. id .. ".pdbqt")[1]
      local hg, hr, un, wrong = compare(mol, ref)
      assert.are.equal(hr, hg, id)
      assert.are.equal(0, un, id)
      assert.are.equal("", table.concat(wrong, " "), id .. " types without H")
      assert.are.equal(ref:info().torsdof, mol:info().torsdof, id .. " torsions without H")
      local hd = 0
      for _, a in ipairs(ref:atoms()) do if a.ad == "HD" then hd = hd + 1 end end
      assert.are.equal(hd, info.added_h, id .. " polar H placed")
    end
  end)

  it("reads 2h7l's MOL2 to the same ligand as its SDF", function()
    local m2 = D.read_mol2(DIR .. "2h7l.mol2")
    assert.are.equal(1, #m2)
    assert.are.equal(39, m2[1]:info().natoms)
    local a = m2[1]:prepare()
    local b = D.read_sdf(DIR .. "2h7l.sdf")[1]:prepare()
    local hg, hr, un, wrong = compare(a, b)
    assert.are.equal(hr, hg)
    assert.are.equal(0, un)
    assert.are.equal("", table.concat(wrong, " "))
    assert.are.equal(b:info().torsdof, a:info().torsdof)
    assert.are.equal(3, a:info().torsdof)
    -- partial charges are kept from the file
    assert.is_true(math.abs(m2[1]:atoms()[1].partial_charge - (-0.0590)) < 1e-9)
  end)

  it("perceives bonds for a PDB ligand without CONECT", function()
    local chem = D.read_sdf(DIR .. "1iep.sdf")[1]
    local lines = {}
    for i, a in ipairs(chem:atoms()) do
      if a.element ~= "H" then
        lines[#lines + 1] = string.format("HETATM%5d %-4s STI A 201    %8.3f%8.3f%8.3f  1.00 20.00          %2s",
          i, a.element .. i % 10, a.x, a.y, a.z, a.element)
      end
    end
    local pdb = D.parse_pdb("HEADER    TEST\n" .. table.concat(lines, "\n") .. "\nMASTER    0\nEND\n", "sti.pdb")
    assert.is_false(pdb:info().has_bonds)
    local mol, _, info = pdb:prepare()
    assert.is_true(info.bonds_perceived)
    assert.are.equal(37, info.heavy)
    -- aromatic rings from planarity, C=O from bond lengths: the same types
    -- and torsions as obabel on the SDF, except the piperazine N+ (serial
    -- 36 in the reference): a PDB file carries no formal charge, so it
    -- stays an acceptor NA with no added H
    local ref = D.read_ligands(DIR .. "1iep.pdbqt")[1]
    local hg, hr, un, wrong = compare(mol, ref)
    assert.are.equal(hr, hg)
    assert.are.equal(0, un)
    assert.are.equal("36:N/NA", table.concat(wrong, " "))
    assert.are.equal(ref:info().torsdof, mol:info().torsdof)
  end)

  it("refuses an element AutoDock cannot type", function()
    local sdf = "boron\n\n\n  2  1  0  0  0  0            999 V2000\n" ..
      "    0.0000    0.0000    0.0000 B   0  0\n    1.5000    0.0000    0.0000 C   0  0\n  1  2  1  0\nM  END\n$$$$\n"
    local c = D.parse_sdf(sdf, "b.sdf")[1]
    errmatch(function() c:prepare() end, "element B %(atom 1%) has no AutoDock type")
  end)

  it("drops counter-ions and keeps the largest piece", function()
    local sdf = "salt\n\n\n  3  1  0  0  0  0            999 V2000\n" ..
      "    0.0000    0.0000    0.0000 C   0  0\n    1.4000    0.0000    0.0000 O   0  0\n" ..
      "    5.0000    0.0000    0.0000 Cl  0  5\n  1  2  1  0\nM  END\n$$$$\n"
    local m, _, info = D.parse_sdf(sdf, "salt.sdf")[1]:prepare()
    assert.are.equal(1, info.dropped)
    assert.are.equal(2, info.heavy)
    assert.are.equal(1, info.added_h) -- the methanol OH
    assert.are.equal(3, m:info().natoms)
  end)
end)

describe("dock SDF reader", function()
  it("reads V3000 like V2000", function()
    local a = D.read_sdf(DIR .. "1iep.sdf")[1]
    local b = D.read_sdf(DIR .. "1iep_v3000.sdf")[1]
    local aa, ba = a:atoms(), b:atoms()
    assert.are.equal(#aa, #ba)
    local charged = 0
    for i = 1, #aa do
      assert.are.equal(aa[i].element, ba[i].element)
      assert.are.equal(aa[i].charge, ba[i].charge)
      assert.is_true(dist(aa[i], ba[i]) < 1e-9 or math.abs(aa[i].x - ba[i].x) + math.abs(aa[i].y - ba[i].y) < 1e-9)
      if aa[i].charge ~= 0 then charged = charged + 1 end
    end
    assert.are.equal(1, charged) -- 1iep's M  CHG
    local ab, bb = a:bonds(), b:bonds()
    assert.are.equal(#ab, #bb)
    for i = 1, #ab do
      for k = 1, 3 do assert.are.equal(ab[i][k], bb[i][k]) end
    end
    local ma, mb = a:prepare(), b:prepare()
    assert.are.equal(ma:info().torsdof, mb:info().torsdof)
    local hg, hr, un, wrong = compare(mb, ma)
    assert.are.equal(hr, hg)
    assert.are.equal(0, un)
    assert.are.equal("", table.concat(wrong, " "))
  end)

  it("streams a multi-record library with properties", function()
    local d = tmpdir()
    local lib = d .. "/lib.sdf"
    local f = assert(io.open(lib, "wb"))
    for _, id in ipairs({ "1y6r", "184l", "4up5" }) do f:write(slurp(DIR .. id .. ".sdf")) end
    f:close()
    local titles = {}
    for c in D.sdf_reader(lib) do titles[#titles + 1] = c:info().natoms end
    assert.are.same({ 38, 10, 20 }, titles)
    local all = D.read_sdf(lib)
    assert.are.equal(3, #all)
    assert.are.equal("C12H18N5O2S", all[1]:props().MOLECULAR_FORMULA)
    assert.are.equal(all[1]:info().line, 1)
    assert.is_true(all[2]:info().line > 40)
    rmdir(d)
  end)

  it("reports bad files with file:line and keeps streaming after a bad record", function()
    local good = slurp(DIR .. "184l.sdf")
    local trunc = "trunc\n\n\n 20 19  0  0  0  0            999 V2000\n" ..
      string.rep("    0.0000    0.0000    0.0000 C   0  0\n", 5) .. "M  END\n$$$$\n"
    errmatch(function() D.parse_sdf(trunc, "t.sdf") end, "t.sdf:10: the record ends after 5 of its 20 atoms")
    local badbond = "bb\n\n\n  3  1  0  0  0  0            999 V2000\n" ..
      string.rep("    0.0000    0.0000    0.0000 C   0  0\n", 3) .. "  1  9  1  0\nM  END\n"
    errmatch(function() D.parse_sdf(badbond, "b.sdf") end, "b.sdf:8: bond between atoms 1 and 9, but the molecule has 3 atoms")
    local badel = "el\n\n\n  1  0  0  0  0  0            999 V2000\n    0.0000    0.0000    0.0000 Xx  0  0\nM  END\n"
    errmatch(function() D.parse_sdf(badel, "e.sdf") end, "e.sdf:5: unknown element 'Xx'")
    local badxyz = "x\n\n\n  1  0  0  0  0  0            999 V2000\n    0.0000      nope    0.0000 C   0  0\nM  END\n"
    errmatch(function() D.parse_sdf(badxyz, "x.sdf") end, "x.sdf:5: atom 1: cannot read")
    errmatch(function() D.parse_sdf("", "empty.sdf") end, "empty.sdf:0: no molecule")
    errmatch(function() D.parse_sdf("\n\n\n", "blank.sdf") end, "blank.sdf:3: no molecule")
    errmatch(function() D.parse_sdf("title\nprog\n", "short.sdf") end, "short.sdf:2: the record starting at line 1 ends before its counts line")
    assert.are.equal(1, #D.parse_sdf(good .. "\n\n", "trailing.sdf")) -- blank lines after the last $$$$
    errmatch(function() D.read_sdf("/nonexistent/x.sdf") end, "cannot open '/nonexistent/x.sdf'")
    local v3bad = "v3\n\n\n  0  0  0     0  0            999 V3000\nM  V30 BEGIN CTAB\nM  V30 COUNTS 1 1 0 0 0\n" ..
      "M  V30 BEGIN ATOM\nM  V30 1 C 0 0 0 0\nM  V30 END ATOM\nM  V30 BEGIN BOND\nM  V30 1 1 1 7\nM  V30 END BOND\n" ..
      "M  V30 END CTAB\nM  END\n"
    errmatch(function() D.parse_sdf(v3bad, "v3.sdf") end, "v3.sdf:11: bond 1 refers to atom 7")
    -- a bad record between two good ones: the iterator raises once, then goes on
    local d = tmpdir()
    local f = assert(io.open(d .. "/mix.sdf", "wb"))
    f:write(good, trunc, good)
    f:close()
    local it = D.sdf_reader(d .. "/mix.sdf")
    assert.are.equal(10, it():info().natoms)
    errmatch(it, "mix.sdf:%d+: the record ends after 5 of its 20 atoms")
    assert.are.equal(10, it():info().natoms)
    assert.is_nil(it())
    rmdir(d)
  end)
end)

describe("dock MOL2 and PDB readers", function()
  it("reads PDB altlocs, CONECT orders and skips other records", function()
    local pdb = table.concat({
      "HEADER    LIGAND",
      "REMARK   1 test",
      "HETATM    1  C1 ALIG A   1       0.000   0.000   0.000  0.40 10.00           C",
      "HETATM    2  C1 BLIG A   1       0.100   0.000   0.000  0.60 10.00           C",
      "HETATM    3  O1 ALIG A   1       1.200   0.000   0.000  0.50 10.00           O",
      "HETATM    4  O1 BLIG A   1       1.300   0.000   0.000  0.50 10.00           O",
      "HETATM    5 CL1  LIG A   1      -1.700   0.000   0.000  1.00 10.00          CL",
      "CONECT    1    3    3    5",
      "CONECT    3    1    1",
      "MASTER        0    0    0    0    0    0    0    0    5    0    2    0",
      "END" }, "\n")
    local c = D.parse_pdb(pdb, "l.pdb")
    local at = c:atoms()
    assert.are.equal(3, #at)
    assert.are.equal("B", at[1].altloc) -- higher occupancy wins
    assert.is_true(math.abs(at[1].x - 0.1) < 1e-12)
    assert.are.equal("A", at[2].altloc) -- a tie keeps the first
    assert.are.equal("Cl", at[3].element)
    local b = c:bonds()
    assert.are.equal(2, #b)
    assert.are.same({ 1, 2, 2 }, b[1]) -- listed twice: double
    assert.are.same({ 1, 3, 1 }, b[2])
    errmatch(function() D.parse_pdb("HEADER\nEND\n", "n.pdb") end, "n.pdb:2: no ATOM or HETATM")
    errmatch(function() D.parse_pdb("ATOM      1  C   LIG A   1       x.000   0.000   0.000\n", "c.pdb") end,
      "c.pdb:1: coordinate x")
  end)

  it("reads multi-molecule MOL2 and reports bad records", function()
    local one = slurp(DIR .. "2h7l.mol2")
    local two = D.parse_mol2(one .. "\n" .. one, "two.mol2")
    assert.are.equal(2, #two)
    assert.are.equal(two[1]:info().natoms, two[2]:info().natoms)
    assert.are.equal("665_401_2H7L", two[2]:info().title)
    errmatch(function() D.parse_mol2("", "e.mol2") end, "e.mol2:0: no @<TRIPOS>MOLECULE")
    local bad = "@<TRIPOS>MOLECULE\nm\n 2 1\nSMALL\n\n@<TRIPOS>ATOM\n 1 C1 0 0 0 C.3\n 2 O1 1.4 0 0 O.3\n" ..
      "@<TRIPOS>BOND\n 1 1 5 1\n"
    errmatch(function() D.parse_mol2(bad, "b.mol2") end, "b.mol2:10: bond 1 refers to atom 5")
    local badel = "@<TRIPOS>MOLECULE\nm\n 1 0\nSMALL\n\n@<TRIPOS>ATOM\n 1 X1 0 0 0 Qq.3\n"
    errmatch(function() D.parse_mol2(badel, "q.mol2") end, "q.mol2:7: unknown element in atom type 'Qq.3'")
  end)
end)

describe("dock RMSD", function()
  it("is 0 for a pose against itself and |t| for a translated copy", function()
    local c = D.read_sdf(DIR .. "1iep.sdf")[1]
    local x = c:coords()
    assert.are.equal(0, (D.rmsd(c, x, x)))
    local t = vl.tensor({ { 0.3, -1.2, 2.0 } }, { dtype = "float64" })
    local y = x + t
    local want = math.sqrt(0.3 ^ 2 + 1.2 ^ 2 + 2.0 ^ 2)
    assert.is_true(math.abs(D.rmsd(c, x, y) - want) < 1e-12)
    assert.is_true(math.abs(D.rmsd(c, x, y, { symmetry = false }) - want) < 1e-12)
  end)

  it("sees symmetric swaps (methyls, carboxylate oxygens)", function()
    -- 184l: isobutylbenzene, atoms 9 and 10 are the two methyls
    local c = D.read_sdf(DIR .. "184l.sdf")[1]
    local x = c:coords()
    local t = x:totable()
    t[9], t[10] = t[10], t[9]
    local y = vl.tensor(t, { dtype = "float64" })
    local sym, n = D.rmsd(c, x, y)
    assert.is_true(sym < 1e-12)
    assert.is_true(n >= 1)
    assert.is_true(D.rmsd(c, x, y, { symmetry = false }) > 0.5)
    -- benzoate: O= and O- differ by bond order unless orders are ignored
    local sdf = "benzoate\n\n\n  9  9  0  0  0  0            999 V2000\n" ..
      "    0.0000    1.4000    0.0000 C   0  0\n    1.2124    0.7000    0.0000 C   0  0\n" ..
      "    1.2124   -0.7000    0.0000 C   0  0\n    0.0000   -1.4000    0.0000 C   0  0\n" ..
      "   -1.2124   -0.7000    0.0000 C   0  0\n   -1.2124    0.7000    0.0000 C   0  0\n" ..
      "    0.0000    2.9000    0.0000 C   0  0\n    1.1000    3.5000    0.0000 O   0  0\n" ..
      "   -1.1000    3.5000    0.0000 O   0  5\n" ..
      "  1  2  2  0\n  2  3  1  0\n  3  4  2  0\n  4  5  1  0\n  5  6  2  0\n  6  1  1  0\n" ..
      "  1  7  1  0\n  7  8  2  0\n  7  9  1  0\nM  CHG  1   9  -1\nM  END\n$$$$\n"
    local b = D.parse_sdf(sdf, "benzoate.sdf")[1]
    assert.are.equal(-1, b:atoms()[9].charge)
    local bx = b:coords()
    local bt = bx:totable()
    bt[8], bt[9] = bt[9], bt[8]
    local by = vl.tensor(bt, { dtype = "float64" })
    assert.is_true(D.rmsd(b, bx, by, { ignore_orders = true }) < 1e-12)
    assert.is_true(D.rmsd(b, bx, by) > 0.5)
    -- the ring flip (ortho/meta pairs swapped with the oxygens) is found too
    bt = bx:totable()
    bt[2], bt[6] = bt[6], bt[2]
    bt[3], bt[5] = bt[5], bt[3]
    bt[8], bt[9] = bt[9], bt[8]
    assert.is_true(D.rmsd(b, bx, vl.tensor(bt, { dtype = "float64" }), { ignore_orders = true }) < 1e-12)
  end)

  it("agrees with Open Babel's obrms on pose pairs", function()
    local fx = dofile(DIR .. "obrms.lua")
    for _, e in ipairs(fx) do
      local a = D.read_sdf(DIR .. "pose_" .. e.name .. "_a.sdf")[1]
      local b = D.read_sdf(DIR .. "pose_" .. e.name .. "_b.sdf")[1]
      local r = D.rmsd(a, a:coords(), b:coords())
      local p = D.rmsd(a, a:coords(), b:coords(), { symmetry = false })
      assert.is_true(math.abs(p - e.plain) < 2e-4, e.name .. " plain " .. p .. " vs " .. e.plain)
      if e.obrms then assert.is_true(math.abs(r - e.obrms) < 2e-4, e.name .. " " .. r .. " vs obrms " .. e.obrms) end
    end
    -- 184l's pair has its methyls swapped: symmetry must matter there
    assert.is_true(fx[1].obrms < fx[1].plain - 0.3)
  end)

  -- Vina's own output (tests/fixtures/dock/vina_out, scripts/fixtures/dock_vina_out.sh)
  -- against the RMSDs the data's curator computed for it (vina_reference.csv:
  -- automorphisms on element and connectivity, bond orders ignored)
  it("mol:rmsd gives vina_reference.csv's RMSDs of Vina's output poses", function()
    local ref = dofile("tests/lua/dock_reference.lua").by_id
    local dock = require "vl.dock"
    for _, id in ipairs { "1s3v", "5ia3", "1uw6" } do
      local lig = dock.ligand("../shared/data/complexes/" .. id .. "/ligand.pdbqt")
      local modes = D.read_ligands("tests/fixtures/dock/vina_out/" .. id .. ".pdbqt")
      local top = lig:rmsd(modes[1])
      assert.is_true(math.abs(top - ref[id].top_rmsd) < 2e-3, ("%s top %.4f vs %.3f"):format(id, top, ref[id].top_rmsd))
      local best = math.huge
      for _, m in ipairs(modes) do best = math.min(best, (lig:rmsd(m))) end
      assert.is_true(math.abs(best - ref[id].best_rmsd) < 2e-3, ("%s best %.4f vs %.3f"):format(id, best, ref[id].best_rmsd))
      -- coordinates work as well as a Molecule
      assert.are.equal(top, (lig:rmsd(modes[1]:coords())))
    end
    -- 1s3v's mode 1 is the crystal pose flipped: plain RMSD says 2.57 Å
    local lig = dock.ligand("../shared/data/complexes/1s3v/ligand.pdbqt")
    local m1 = D.read_ligands("tests/fixtures/dock/vina_out/1s3v.pdbqt")[1]
    assert.is_true(lig:rmsd(m1, { symmetry = false }) > 2.5)
    assert.are.equal(0, (lig:rmsd(lig)))
    -- Chem objects: the same through vl.dock.rmsd
    local c = D.read_sdf(DIR .. "184l.sdf")[1]
    local t = c:coords():totable()
    t[9], t[10] = t[10], t[9]
    local y = vl.tensor(t, { dtype = "float64" })
    assert.is_true(c:rmsd(y) < 1e-12)
    assert.are.equal(D.rmsd(c, c:coords(), y, { symmetry = false }), (c:rmsd(y, { symmetry = false })))
    assert.are.equal(0, (c:rmsd(c)))
    errmatch(function() lig:rmsd(c) end, "rmsd: expected a Molecule or %[32, 3%] coordinates")
    errmatch(function() lig:rmsd(vl.zeros(3, 3)) end, "must be a %[32, 3%] tensor .*got %[3, 3%]")
    errmatch(function() lig:rmsd(m1, { max_automorphisms = 0 }) end, "max_automorphisms' = 0")
    errmatch(function() lig:rmsd(dock.ligand("../shared/data/complexes/184l/ligand.pdbqt")) end, "other molecule has")
    errmatch(function() c:rmsd(lig) end, "rmsd: expected a Chem")
  end)

  it("dock.ligand prepares an SDF or MOL2 record and returns the atom map", function()
    local dock = require "vl.dock"
    local lig, map = dock.ligand("../shared/data/complexes/1s3v/ligand.sdf")
    local want, wmap = D.read_sdf("../shared/data/complexes/1s3v/ligand.sdf")[1]:prepare()
    assert.are.same(want:info(), lig:info())
    assert.are.same(wmap, map)
    assert.are.same(want:coords():totable(), lig:coords():totable())
    local l2 = dock.ligand(DIR .. "2h7l.mol2")
    assert.are.equal(dock.ligand(DIR .. "2h7l.sdf"):info().natoms, l2:info().natoms)
    errmatch(function() dock.ligand("../shared/data/complexes/1s3v/ligand.sdf", { model = 2 }) end,
      "has 1 record%(s%), no record 2")
    errmatch(function() dock.ligand(3) end, "dock.ligand: expected a path")
  end)

  it("stops with a clear error past the automorphism bound", function()
    local lines = { "many\n\n\n  8  0  0  0  0  0            999 V2000\n" }
    for _ = 1, 8 do lines[#lines + 1] = "    0.0000    0.0000    0.0000 C   0  0\n" end
    lines[#lines + 1] = "M  END\n"
    local c = D.parse_sdf(table.concat(lines), "many.sdf")[1]
    local x = c:coords()
    local y = x + 1.0
    errmatch(function() D.rmsd(c, x, y, { max_automorphisms = 100 }) end, "rmsd: more than 100 automorphisms")
    assert.is_true(math.abs(D.rmsd(c, x, y, { symmetry = false }) - math.sqrt(3)) < 1e-12)
    errmatch(function() D.rmsd(c, x, vl.zeros(3, 3)) end, "must be a %[8, 3%]")
  end)
end)

describe("dock writers", function()
  it("round-trips PDBQT poses through read_ligands", function()
    local d = tmpdir()
    local chem = D.read_sdf(DIR .. "3hl5.sdf")[1]
    local mol = chem:prepare()
    local path = d .. "/out.pdbqt"
    D.write_pdbqt(path, mol)
    local back = D.read_ligands(path)[1]
    assert.are.equal(mol:info().natoms, back:info().natoms)
    assert.are.equal(mol:info().torsdof, back:info().torsdof)
    assert.are.equal(mol:info().ntorsions, back:info().ntorsions)
    local ma, ba = mol:atoms(), back:atoms()
    for i = 1, #ma do
      assert.are.equal(ma[i].ad, ba[i].ad)
      assert.is_true(dist(ma[i], ba[i]) < 1e-9, "atom " .. i)
    end
    -- two poses with scores: MODEL records and Vina's result line
    local x = mol:coords()
    local poses = vl.stack({ x, x + 1.5 })
    D.write_pdbqt(path, mol, { poses = poses, scores = { { -7.5, 0, 0 }, { -6.25, 1.234, 2.5 } } })
    local text = slurp(path)
    assert.is_truthy(text:find("REMARK VINA RESULT:    %-7%.500      0%.000      0%.000\n"))
    assert.is_truthy(text:find("REMARK VINA RESULT:    %-6%.250      1%.234      2%.500\n"))
    local two = D.read_ligands(path)
    assert.are.equal(2, #two)
    local a2 = two[2]:atoms()
    for i = 1, #ma do assert.is_true(math.abs(a2[i].x - (ma[i].x + 1.5)) < 1e-9) end
    -- every reference ligand, and the curator's PDBQT itself, keep their tree
    for _, id in ipairs(IDS) do
      for _, m in ipairs({ D.read_sdf(DIR .. id .. ".sdf")[1]:prepare(), D.read_ligands(DIR .. id .. ".pdbqt")[1] }) do
        D.write_pdbqt(path, m)
        local r = D.read_ligands(path)[1]
        local a, c = m:atoms(), r:atoms()
        assert.are.equal(#a, #c, id)
        for i = 1, #a do
          assert.are.equal(a[i].ad, c[i].ad, id .. " atom " .. i)
          assert.is_true(dist(a[i], c[i]) < 1e-9, id .. " atom " .. i)
        end
        local mi, ri = m:info(), r:info()
        assert.are.equal(mi.torsdof, ri.torsdof, id)
        assert.are.equal(mi.npairs, ri.npairs, id)
        assert.are.equal(mi.nrot, ri.nrot, id)
      end
    end
    assert.are.same({ "out.pdbqt" }, listdir(d)) -- no temporary file left
    errmatch(function() D.write_pdbqt(d .. "/nodir/x.pdbqt", mol) end, "temporary file next to")
    errmatch(function() D.write_pdbqt(path, mol, { poses = vl.zeros(2, 3) }) end, "poses must be")
    rmdir(d)
  end)

  it("round-trips SDF with scores as properties", function()
    local d = tmpdir()
    local chem = D.read_sdf(DIR .. "1y6r.sdf")[1]
    local x = chem:coords()
    local path = d .. "/out.sdf"
    D.write_sdf(path, chem, { poses = vl.stack({ x, x - 0.25 }),
      props = { { minimizedAffinity = -7.5, rmsd = "0.0" }, { minimizedAffinity = -6.25, rmsd = "1.1" } } })
    local back = D.read_sdf(path)
    assert.are.equal(2, #back)
    assert.are.equal("-7.5", back[1]:props().minimizedAffinity)
    assert.are.equal("-6.25", back[2]:props().minimizedAffinity)
    assert.are.equal("1.1", back[2]:props().rmsd)
    assert.are.equal("C12H18N5O2S", back[1]:props().MOLECULAR_FORMULA) -- the molecule's own
    local ca, ba = chem:atoms(), back[2]:atoms()
    for i = 1, #ca do
      assert.are.equal(ca[i].element, ba[i].element)
      assert.are.equal(ca[i].charge, ba[i].charge)
      assert.is_true(math.abs(ba[i].x - (ca[i].x - 0.25)) < 1e-9)
    end
    local cb, bb = chem:bonds(), back[1]:bonds()
    for i = 1, #cb do assert.are.same(cb[i], bb[i]) end
    -- a charged molecule keeps M  CHG
    local s = D.read_sdf(DIR .. "1iep.sdf")[1]
    D.write_sdf(path, s)
    local n = 0
    for _, a in ipairs(D.read_sdf(path)[1]:atoms()) do if a.charge == 1 then n = n + 1 end end
    assert.are.equal(1, n)
    assert.are.same({ "out.sdf" }, listdir(d))
    rmdir(d)
  end)
end)

describe("dock readers on damaged files", function()
  it("never crash on truncated or corrupted SDF, MOL2 and PDB text", function()
    local seed = 12345
    local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n end
    local inputs = {
      { D.parse_sdf, slurp(DIR .. "1iep.sdf") },
      { D.parse_sdf, slurp(DIR .. "1iep_v3000.sdf") },
      { D.parse_mol2, slurp(DIR .. "2h7l.mol2") },
      { D.parse_pdb, slurp(DIR .. "1iep.pdbqt") },
    }
    local parsed, failed = 0, 0
    for _, inp in ipairs(inputs) do
      local parse, text = inp[1], inp[2]
      for cut = 0, #text, 97 do
        local ok, res = pcall(parse, text:sub(1, cut), "cut")
        if ok then parsed = parsed + 1 else failed = failed + 1 assert.is_truthy(tostring(res):find("cut")) end
        if ok and parse ~= D.parse_pdb then
          for _, c in ipairs(res) do pcall(c.prepare, c) end
        end
      end
      for _ = 1, 40 do
        local t = {}
        for i = 1, #text do t[i] = text:sub(i, i) end
        for _ = 1, 5 do
          local i = rand(#text) + 1
          t[i] = string.char(rand(2) == 0 and 48 + rand(10) or 32 + rand(95))
        end
        local ok, res = pcall(parse, table.concat(t), "bad")
        if ok then
          parsed = parsed + 1
          if parse == D.parse_pdb then res = { res } end
          for _, c in ipairs(res) do
            local okp, mol = pcall(c.prepare, c)
            if okp then pcall(D.rmsd, c, c:coords(), c:coords()) end
            assert.is_true(okp or mol ~= nil)
          end
        else
          failed = failed + 1
        end
      end
    end
    assert.is_true(parsed > 0 and failed > 0)
  end)
end)
